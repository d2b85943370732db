"""How far SIEM delivery has got, so pruning never deletes a row a SIEM has not received yet.

SIEM streaming (`keyward.siem`) reads the audit log and so sits above it; the audit app must not
import it at module level. This is the one place the audit app asks it anything, at call time.
"""

from keyward.tenancy.models import Org


def siem_delivered_through(org: Org) -> int | None:
    """The seq up to which every SIEM destination of `org` has received the org's rows; None when the
    org streams to no SIEM. Any error propagates, so a prune fails rather than delete undelivered rows."""
    from keyward.siem.services import siem_delivered_through as delivered_through

    return delivered_through(org)
