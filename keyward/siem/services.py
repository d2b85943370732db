"""An org's own SIEM destination (set, remove, retry, status) and how far streaming has got.

Changing or removing the destination is owner-only in the API: redirecting or stopping the audit
stream is what an intruder would do to blind the security team. Every change is audited.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from keyward.audit import events
from keyward.audit.models import AuditChain, Outcome, chain_key
from keyward.audit.writer import AccountLike, AuditContext, record_event
from keyward.core.exceptions import Conflict, NotFound
from keyward.net.ssrf import validate_outbound_url
from keyward.siem.delivery import ensure_cursor, kinds_covering
from keyward.siem.models import CursorState, DestinationKind, OrgSiemDestination, SiemCursor
from keyward.tenancy.models import Org
from keyward.tenancy.scoping import scope_to_org

MIN_SECRET_LENGTH = 32  # also enforced for KEYWARD_SIEM_WEBHOOK_SECRET in settings


@dataclass(frozen=True)
class SiemStatus:
    """What an org's admins may see: the host (never the URL or secret) and how delivery stands."""

    host: str
    created_at: datetime
    updated_at: datetime
    state: str
    delivered_through: int
    head: int
    pending_events: int
    attempts: int
    next_attempt_at: datetime | None
    last_error: str
    parked_at: datetime | None
    last_delivered_at: datetime | None


def _destination(org: Org, *, lock: bool = False) -> OrgSiemDestination | None:
    rows = OrgSiemDestination.objects.select_for_update() if lock else OrgSiemDestination.objects.all()
    return scope_to_org(rows, org).first()


def _cursor(org: Org) -> SiemCursor | None:
    return scope_to_org(SiemCursor.objects.filter(destination=DestinationKind.ORG), org).first()


def set_destination(
    org: Org, *, url: str, secret: str, actor: AccountLike, audit_context: AuditContext | None = None
) -> SiemStatus:
    """Stream the org's audit events to `url`, signed with `secret` (both sealed, never returned).

    A new destination starts from the oldest retained row. Changing it keeps the position (to resend
    history, remove it and set it again) and clears a parked or backing-off state: a changed
    configuration deserves a fresh attempt.
    """
    url = validate_outbound_url(url, field="url")
    with transaction.atomic():
        destination = _destination(org, lock=True)
        created = destination is None
        if created:
            destination = OrgSiemDestination(org=org)
        destination.seal_destination(url, secret)
        destination.save()
        cursor = ensure_cursor(DestinationKind.ORG, org.pk)
        SiemCursor.objects.filter(pk=cursor.pk).update(
            state=CursorState.OK, attempts=0, next_attempt_at=timezone.now(), last_error="", parked_at=None
        )
        record_event(
            org=org,
            event_type=events.SIEM_DESTINATION_SET,
            outcome=Outcome.SUCCESS,
            actor=actor,
            context=audit_context,
            detail={"host": destination.host, "created": created},
        )
    return status(org)


def remove_destination(org: Org, *, actor: AccountLike, audit_context: AuditContext | None = None) -> None:
    """Stop the org's own stream and forget its position (setting one again starts from the oldest row)."""
    with transaction.atomic():
        destination = _destination(org, lock=True)
        if destination is None:
            raise NotFound("No SIEM destination is configured.", code="no_siem_destination")
        scope_to_org(SiemCursor.objects.filter(destination=DestinationKind.ORG), org).delete()
        destination.delete()
        record_event(
            org=org,
            event_type=events.SIEM_DESTINATION_REMOVED,
            outcome=Outcome.SUCCESS,
            actor=actor,
            context=audit_context,
            detail={"host": destination.host},
        )


def retry_delivery(org: Org, *, actor: AccountLike, audit_context: AuditContext | None = None) -> SiemStatus:
    """Un-park the org's stream (or cut a backoff short): it resumes at once from where it stood.

    The audit row this writes wakes the delivery when it commits.
    """
    with transaction.atomic():
        if _destination(org, lock=True) is None:
            raise NotFound("No SIEM destination is configured.", code="no_siem_destination")
        cursor = ensure_cursor(DestinationKind.ORG, org.pk)
        cursor = SiemCursor.objects.select_for_update().get(pk=cursor.pk)
        if cursor.state == CursorState.OK:
            raise Conflict("SIEM delivery is neither parked nor backing off.", code="siem_delivery_ok")
        _resume(cursor, org=org, actor=actor, audit_context=audit_context)
    return status(org)


def retry_platform_delivery(chain: str, *, actor: AccountLike) -> bool:
    """The operator's un-park of the platform stream on one chain; False if it was not waiting."""
    with transaction.atomic():
        cursor = (
            SiemCursor.objects.select_for_update()
            .filter(destination=DestinationKind.PLATFORM, chain=chain)
            .exclude(state=CursorState.OK)
            .first()
        )
        if cursor is None:
            return False
        _resume(cursor, org=None, actor=actor, audit_context=None, destination=DestinationKind.PLATFORM)
    return True


def _resume(
    cursor: SiemCursor,
    *,
    org: Org | None,
    actor: AccountLike,
    audit_context: AuditContext | None,
    **detail: str,
) -> None:
    """Back to OK and due now, from where it stood; audited on `org`'s chain (None: the platform's)."""
    previous_state, last_error = cursor.state, cursor.last_error
    cursor.state, cursor.attempts, cursor.next_attempt_at = CursorState.OK, 0, timezone.now()
    cursor.last_error, cursor.parked_at = "", None
    cursor.save(update_fields=["state", "attempts", "next_attempt_at", "last_error", "parked_at"])
    record_event(
        org=org,
        event_type=events.SIEM_DELIVERY_RETRIED,
        outcome=Outcome.SUCCESS,
        actor=actor,
        context=audit_context,
        detail={
            **detail,
            "chain": cursor.chain,
            "previous_state": previous_state,
            "error": last_error,
            "from_seq": cursor.last_seq + 1,
        },
    )


def status(org: Org) -> SiemStatus:
    destination = _destination(org)
    if destination is None:
        raise NotFound("No SIEM destination is configured.", code="no_siem_destination")
    cursor = _cursor(org) or SiemCursor(destination=DestinationKind.ORG, chain=chain_key(org), org=org)
    head = AuditChain.objects.filter(key=chain_key(org)).first() or AuditChain(key=chain_key(org))
    return SiemStatus(
        host=destination.host,
        created_at=destination.created_at,
        updated_at=destination.updated_at,
        state=cursor.state,
        delivered_through=cursor.last_seq,
        head=head.last_seq,
        pending_events=max(head.last_seq - max(cursor.last_seq, head.checkpoint_seq), 0),
        attempts=cursor.attempts,
        next_attempt_at=cursor.next_attempt_at if cursor.state == CursorState.BACKING_OFF else None,
        last_error=cursor.last_error,
        parked_at=cursor.parked_at,
        last_delivered_at=cursor.last_delivered_at,
    )


def siem_delivered_through(org: Org | None) -> int | None:
    """The highest seq that every SIEM destination covering `org`'s chain has acknowledged.

    None when no destination covers it (nothing to wait for). A destination that has delivered
    nothing yet counts as 0, and a parked one as where it stopped: pruning up to this seq never
    deletes a row some SIEM has not received.
    """
    kinds = kinds_covering(org.pk if org is not None else None)
    if not kinds:
        return None
    delivered = dict(
        SiemCursor.objects.filter(chain=chain_key(org), destination__in=kinds).values_list("destination", "last_seq")
    )
    return min(delivered.get(kind, 0) for kind in kinds)
