"""Audit rows for what lower floors announce (they cannot import the audit writer themselves)."""

from keyward.audit import floods
from keyward.audit.models import Outcome
from keyward.audit.writer import Actor, AuditContext, record_committed_event, record_event

NOT_FOUND_EVENT = "access.not_found"
NOT_FOUND_SUMMARY_EVENT = "access.not_found_summary"


def record_key_operation(sender, *, action: str, failed: bool, performed_by: str, detail: dict, **kwargs) -> None:
    """A signing-key or master-key operation, on the platform chain. Raising here fails the operation."""
    record_event(
        org=None,
        event_type=action,
        outcome=Outcome.FAILURE if failed else Outcome.SUCCESS,
        actor=Actor.system(performed_by),
        detail=detail,
    )


def record_object_not_found(
    sender, *, request, account, org, route: str, action: str, lookup: str, owner_org_id: int | None, **kwargs
) -> None:
    """A 404 on an org route, on the platform chain: the operator sees who asks for what, and whether
    another org holds it (the caller never learns that). One full row per account and window; the
    rest are counted and summed up (keyward.audit.floods)."""
    flood = {"org": None, "event": NOT_FOUND_SUMMARY_EVENT, "code": "not_found", "detail": {"account_id": account.pk}}
    if not floods.first_in_window(flood):
        return
    record_committed_event(
        org=None,
        event_type=NOT_FOUND_EVENT,
        outcome=Outcome.DENIED,
        reason_code="not_found",
        actor=account,
        context=AuditContext.from_request(request),
        detail={
            "org_id": org.pk,
            "route": route,
            "action": action,
            "lookup": lookup,
            "owner_org_id": owner_org_id,
            "aggregated": True,
            "window_seconds": floods.window_seconds(),
        },
    )
