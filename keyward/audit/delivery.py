"""How far SIEM delivery has got, so pruning never deletes a row a SIEM has not received yet.

SIEM streaming (`keyward.siem`) reads the audit log and so sits above it; the audit app must not
import it at module level. This is the one place the audit app asks it anything, at call time.
"""

from django.apps import apps

from keyward.tenancy.models import Org

SIEM_APP = "keyward.siem"
_SIEM_MODULES = (SIEM_APP, f"{SIEM_APP}.services")


def siem_delivered_through(org: Org) -> int | None:
    """The seq up to which every SIEM destination of `org` has received the org's rows.

    None when the org streams to no SIEM (then nothing holds pruning back). Only an absent SIEM
    app reads as "no SIEM": if the app is installed but its cursor cannot be read, the error
    propagates and the prune fails rather than deleting rows that may be undelivered.
    """
    try:
        from keyward.siem.services import siem_delivered_through as delivered_through
    except ModuleNotFoundError as exc:
        if exc.name in _SIEM_MODULES and not apps.is_installed(SIEM_APP):
            return None
        raise
    return delivered_through(org)
