"""What tenancy tells the floors above it (the audit log), without importing them.

`object_not_found` is sent when an org-scoped route answers 404 for an id or name: another org's
object looks exactly like a missing one to the caller, but the operator should see who probes.
Sent with `request`, `account`, `org` (the caller's), `route`, `action`, `lookup` (the value asked
for) and `owner_org_id` (the org that does hold it, or None).
"""

from django.dispatch import Signal

object_not_found = Signal()
