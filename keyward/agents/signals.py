"""What the agents app tells the floors above it (the broker), without importing them.

`agent_revoked` is sent inside `revoke_agent`'s transaction, after the agent row is marked revoked
and its audit row holds the org's chain lock. The broker revokes what the agent holds there, so the
revocation and its cascade commit (or fail) together. Sent with `agent`, `actor`, `audit_context`.
"""

from django.dispatch import Signal

agent_revoked = Signal()
