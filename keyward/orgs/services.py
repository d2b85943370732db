"""The caller's org settings: what an owner may change about their org, validated and audited."""

from dataclasses import dataclass
from typing import Any

from django.db import transaction

from keyward.audit import events
from keyward.audit.models import Outcome
from keyward.audit.services import MAX_PRUNE_DAYS, min_prune_days
from keyward.audit.writer import AccountLike, AuditContext, record_event
from keyward.core.exceptions import InvalidRequest
from keyward.core.ratelimit import MAX_BURST, MAX_OUTSTANDING, MAX_RATE_PER_MINUTE
from keyward.tenancy.models import Org

MINUTE, DAY = 60, 86_400


@dataclass(frozen=True)
class EditableSetting:
    minimum: int
    maximum: int
    help: str
    nullable: bool = False


# What an owner may change through PATCH /v1/org, and within which bounds; everything else is read-only.
EDITABLE_SETTINGS = {
    "audit_retention_days": EditableSetting(
        min_prune_days(),
        MAX_PRUNE_DAYS,
        "Audit rows older than this many days are pruned daily; null keeps them forever. The operator's floor "
        "(KEYWARD_AUDIT_MIN_RETENTION_DAYS) is the minimum.",
        True,
    ),
    "approval_pending_seconds": EditableSetting(MINUTE, 7 * DAY, "How long a request waits for an approver."),
    "broker_rate_per_agent": EditableSetting(
        1, MAX_RATE_PER_MINUTE, "Credential requests per minute per agent (token bucket); null: the platform's.", True
    ),
    "broker_burst_per_agent": EditableSetting(
        1, MAX_BURST, "Requests an agent may make at once; null: the platform's.", True
    ),
    "broker_rate_per_end_user": EditableSetting(
        1, MAX_RATE_PER_MINUTE, "Credential requests per minute per end user; null: the platform's.", True
    ),
    "broker_burst_per_end_user": EditableSetting(
        1, MAX_BURST, "Requests one end user's agents may make at once; null: the platform's.", True
    ),
    "max_outstanding_per_agent": EditableSetting(
        1, MAX_OUTSTANDING, "Live (unexpired, unrevoked) credentials an agent may hold; null: the platform's.", True
    ),
    "approval_grant_seconds": EditableSetting(MINUTE, DAY, "How long an approval stays usable."),
    "approval_denial_seconds": EditableSetting(
        MINUTE, 7 * DAY, "How long a denial keeps refusing the identical request."
    ),
}


def _check(changes: dict[str, Any]) -> None:
    errors = {}
    for name, value in changes.items():
        setting = EDITABLE_SETTINGS.get(name)
        if setting is None:
            errors[name] = ["This setting cannot be changed here."]
        elif value is None:
            if not setting.nullable:
                errors[name] = ["This setting cannot be null."]
        elif type(value) is not int or not setting.minimum <= value <= setting.maximum:
            errors[name] = [f"Must be a whole number from {setting.minimum} to {setting.maximum}."]
    if errors:
        raise InvalidRequest("Some settings are not valid.", fields=errors)


def update_settings(
    org: Org, *, changes: dict[str, Any], actor: AccountLike, audit_context: AuditContext | None = None
) -> Org:
    """Apply `changes` (checked against EDITABLE_SETTINGS: 400 otherwise) under the org's row lock; one
    `org.settings_changed` row lists old and new.

    Values equal to the current ones are no change: a repeated PATCH writes no row.
    """
    _check(changes)
    with transaction.atomic():
        locked = Org.objects.select_for_update(no_key=True).get(pk=org.pk)  # no_key: ARCHITECTURE.md, "org row locks"
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
