"""The caller's org settings: what an owner may change about their org, validated and audited."""

from typing import Any

from django.db import transaction

from keyward.audit import events
from keyward.audit.models import Outcome
from keyward.audit.writer import AccountLike, AuditContext, record_event
from keyward.tenancy.models import Org

# Settings an owner changes through PATCH /v1/org; everything else about an org is read-only there.
EDITABLE_SETTINGS = (
    "audit_retention_days",
    "approval_pending_seconds",
    "approval_grant_seconds",
    "approval_denial_seconds",
)


def update_settings(
    org: Org, *, changes: dict[str, Any], actor: AccountLike, audit_context: AuditContext | None = None
) -> Org:
    """Apply validated `changes` under the org's row lock; one `org.settings_changed` row lists old and new.

    Values equal to the current ones are no change: a repeated PATCH writes no row.
    """
    unknown = set(changes) - set(EDITABLE_SETTINGS)
    if unknown:
        raise ValueError(f"not editable org settings: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        locked = Org.objects.select_for_update().get(pk=org.pk)
        diff = {
            name: {"old": getattr(locked, name), "new": value}
            for name, value in changes.items()
            if getattr(locked, name) != value
        }
        if diff:
            for name, change in diff.items():
                setattr(locked, name, change["new"])
            locked.save(update_fields=list(diff))
            record_event(
                org=locked,
                event_type=events.ORG_SETTINGS_CHANGED,
                outcome=Outcome.SUCCESS,
                actor=actor,
                context=audit_context,
                detail={"changes": diff},
            )
    return locked
