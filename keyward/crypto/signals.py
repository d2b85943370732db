"""What crypto tells the floors above it, without importing them.

`key_operation` is sent inside the operation's transaction; the audit app records it there, so a
key operation whose audit row cannot be written fails with it. Sent with: `action` (an audit event
type), `failed` (bool), `performed_by` (the system actor's name) and `detail` (a dict, no secrets).
"""

from django.dispatch import Signal

SIGNING_KEY_ROTATED = "signing_key.rotated"
SIGNING_KEY_RETIRED = "signing_key.retired"
MASTER_KEY_REWRAPPED = "master_key.rewrapped"

key_operation = Signal()


def announce(action: str, *, performed_by: str, detail: dict, failed: bool = False) -> None:
    key_operation.send(sender=None, action=action, failed=failed, performed_by=performed_by, detail=detail)
