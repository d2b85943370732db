"""Audit rules beyond writing: verifying a chain, choosing an export window, pruning old rows."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from keyward.audit import delivery, events
from keyward.audit.chain import compute_hash
from keyward.audit.models import PLATFORM_CHAIN, AuditChain, AuditEvent, Outcome, chain_key
from keyward.audit.writer import AccountLike, Actor, AuditContext, lock_chain_head, record_event
from keyward.core.exceptions import Conflict, InvalidRequest
from keyward.tenancy.models import Org
from keyward.tenancy.scoping import scope_to_org

EXPORT_MAX_ROWS = 50_000
VERIFY_CHUNK_ROWS = 2_000
MAX_PRUNE_DAYS = 36_500


def min_prune_days() -> int:
    """The operator's floor (KEYWARD_AUDIT_MIN_RETENTION_DAYS): no row younger than this is ever pruned."""
    return min(settings.KEYWARD_AUDIT_MIN_RETENTION_DAYS, MAX_PRUNE_DAYS)


def events_of(org: Org | None) -> models.QuerySet:
    """The rows of one chain: an org's (scoped by `scope_to_org`), or the platform chain's.

    The platform chain (org NULL) belongs to no org, so there is no org to scope to; only platform
    operators' tools (verify_audit) read it.
    """
    if org is None:
        return AuditEvent.objects.filter(org__isnull=True)
    return scope_to_org(AuditEvent.objects.all(), org)


class AuditChainBroken(Conflict):
    """A prune found the rows it would delete do not verify."""

    code = "audit_chain_broken"


@dataclass(frozen=True)
class ChainBreak:
    """The first place a chain stops verifying: the row's seq and why."""

    seq: int
    reason: str  # seq_gap | prev_hash_mismatch | hash_mismatch | head_mismatch | checkpoint_mismatch
    message: str


@dataclass(frozen=True)
class VerifyResult:
    """What a walk of one chain found: how far it got and the first break, if any."""

    chain: str
    rows_checked: int
    first_seq: int | None
    last_seq: int | None
    checkpoint_seq: int
    broken: ChainBreak | None

    @property
    def ok(self) -> bool:
        return self.broken is None


class ChainWalk:
    """Checks rows one by one, in seq order, against the previous row: the link and the hash."""

    def __init__(self, checkpoint_seq: int, checkpoint_hash: str) -> None:
        self.expected_seq, self.prev_hash = checkpoint_seq + 1, checkpoint_hash
        self.checked, self.first_seq = 0, None
        self.last_prune_detail: dict[str, Any] | None = None

    def check(self, event: AuditEvent) -> ChainBreak | None:
        if event.seq != self.expected_seq:
            return ChainBreak(
                self.expected_seq, "seq_gap", f"row {self.expected_seq} is missing (the next row is {event.seq})"
            )
        if event.prev_hash != self.prev_hash:
            return ChainBreak(event.seq, "prev_hash_mismatch", "prev_hash does not match the previous row's hash")
        if compute_hash(event) != event.hash:
            return ChainBreak(event.seq, "hash_mismatch", "the row's content does not match its hash")
        if event.event_type == events.AUDIT_PRUNED:
            self.last_prune_detail = event.detail
        self.first_seq = self.first_seq or event.seq
        self.checked += 1
        self.expected_seq, self.prev_hash = event.seq + 1, event.hash
        return None


def verify_chain(org: Org | None) -> VerifyResult:
    """Walk one chain in seq order from its checkpoint, recomputing every hash (bounded memory).

    Safe on a live system: the walk stops at the head as read first (a writer commits its row and
    the head together), and rows appended meanwhile are not mistaken for a break.
    """
    key = chain_key(org)
    head = AuditChain.objects.filter(key=key).first() or AuditChain(key=key)
    walk = ChainWalk(head.checkpoint_seq, head.checkpoint_hash)

    def result(broken: ChainBreak | None) -> VerifyResult:
        last_seq = walk.expected_seq - 1 if walk.checked else None
        return VerifyResult(key, walk.checked, walk.first_seq, last_seq, head.checkpoint_seq, broken)

    rows = events_of(org).filter(seq__gt=head.checkpoint_seq, seq__lte=head.last_seq).order_by("seq")
    for event in rows.iterator(chunk_size=VERIFY_CHUNK_ROWS):
        if broken := walk.check(event):
            return result(broken)

    last_seq, prev_hash, last_prune_detail = walk.expected_seq - 1, walk.prev_hash, walk.last_prune_detail
    if head.last_seq != last_seq:
        return result(
            ChainBreak(
                last_seq + 1,
                "head_mismatch",
                f"the chain head says the last row is {head.last_seq}; the rows end at {last_seq}",
            )
        )
    if head.last_hash != prev_hash:
        return result(ChainBreak(last_seq, "head_mismatch", "the chain head's hash differs from the last row's"))
    stray = _first_row_beyond_head(org, key)
    if stray is not None:
        return result(
            ChainBreak(stray, "head_mismatch", "a row lies beyond the chain head (not written by the writer)")
        )
    if head.checkpoint_seq and not _checkpoint_is_recorded(head, last_prune_detail):
        return result(
            ChainBreak(
                head.checkpoint_seq,
                "checkpoint_mismatch",
                "the prune checkpoint differs from the one the last audit.pruned row recorded",
            )
        )
    return result(None)


def _first_row_beyond_head(org: Org | None, key: str) -> int | None:
    """A committed row past the head's last_seq was not appended by the writer (it moves both at once).

    The rows are read before the head, so a writer committing in between cannot cause a false alarm.
    """
    top = events_of(org).aggregate(top=models.Max("seq"))["top"]
    head_seq = AuditChain.objects.filter(key=key).values_list("last_seq", flat=True).first() or 0
    return head_seq + 1 if top is not None and top > head_seq else None


def _checkpoint_is_recorded(head: AuditChain, prune_detail: dict[str, Any] | None) -> bool:
    """Each prune records the checkpoint it set in its own (hashed) row; the head must agree."""
    return bool(prune_detail) and (
        prune_detail.get("checkpoint_seq") == head.checkpoint_seq
        and prune_detail.get("checkpoint_hash") == head.checkpoint_hash
    )


def verify_all_chains() -> list[tuple[Org | None, VerifyResult]]:
    """Every chain that has a head or rows: the platform chain first, then orgs by id.

    An operator's tool, so it lists every org's chain on purpose; each chain's rows are then read
    through `events_of`.
    """
    keys = set(AuditChain.objects.values_list("key", flat=True))
    org_ids = {int(key.split(":", 1)[1]) for key in keys if key.startswith("org:")}
    org_ids |= set(AuditEvent.objects.filter(org__isnull=False).values_list("org_id", flat=True).distinct())
    chains: list[Org | None] = []
    if PLATFORM_CHAIN in keys or events_of(None).exists():
        chains.append(None)
    chains.extend(Org.objects.filter(pk__in=org_ids).order_by("pk"))
    return [(org, verify_chain(org)) for org in chains]


@dataclass(frozen=True)
class ExportWindow:
    """Rows `since < seq <= until` (fixed before streaming), and where the next page starts."""

    rows: models.QuerySet
    next_since: int | None
    until: int


def export_window(
    org: Org,
    since: int,
    *,
    export_format: str,
    actor: Actor | AccountLike | None = None,
    audit_context: AuditContext | None = None,
) -> ExportWindow:
    """At most EXPORT_MAX_ROWS rows after `since`, in seq order; the cursor is decided up front.

    Reading the log out is itself audited (`audit.exported`, with the seq window), after the window
    is fixed, so the row is not part of the export it records.
    """
    after = events_of(org).filter(seq__gt=since).order_by("seq")
    cap_row = next(iter(after.values_list("seq", flat=True)[EXPORT_MAX_ROWS - 1 : EXPORT_MAX_ROWS]), None)
    if cap_row is None:
        until = after.aggregate(top=models.Max("seq"))["top"] or since
        next_since = None
    else:
        until = cap_row
        next_since = until if after.filter(seq__gt=until).exists() else None
    record_event(
        org=org,
        event_type=events.AUDIT_EXPORTED,
        outcome=Outcome.SUCCESS,
        actor=actor,
        context=audit_context,
        detail={"format": export_format, "since": since, "until": until},
    )
    return ExportWindow(rows=after.filter(seq__lte=until), next_since=next_since, until=until)


@dataclass(frozen=True)
class PruneResult:
    """What one prune did, and what it had to leave for later."""

    deleted: int
    checkpoint_seq: int
    # Old rows stay because some SIEM destination has not received them yet (None: no SIEM).
    siem_delivered_through: int | None
    held_for_siem: bool
    # `max_rows` stopped this prune; more old rows may go in the next one.
    more: bool


def prune(
    *,
    org: Org,
    days: int,
    actor: Actor | AccountLike | None = None,
    audit_context: AuditContext | None = None,
    max_rows: int | None = None,
    record_if_empty: bool = True,
) -> PruneResult:
    """Delete the org's rows older than `days`, keep a checkpoint, and audit the prune.

    Only a prefix of the chain goes: rows before the first row that is not old, so a row newer than
    the cutoff never goes even if clocks stepped back; and never a row past the seq every SIEM
    destination has received, so streaming loses nothing. `max_rows` bounds one call (the chain
    lock, which issuance also takes, is held while rows are deleted). The checkpoint (seq and hash
    of the last deleted row) lets the remaining chain verify; the `audit.pruned` row records it
    too. With `record_if_empty` False a prune that deletes nothing writes no row (idempotent runs).
    """
    floor = min_prune_days()
    if not floor <= days <= MAX_PRUNE_DAYS:
        raise InvalidRequest(
            "days is out of range.", fields={"days": [f"Must be a whole number from {floor} to {MAX_PRUNE_DAYS}."]}
        )
    if max_rows is not None and max_rows < 1:
        raise ValueError("max_rows must be at least 1")
    cutoff = timezone.now() - timedelta(days=days)
    # Read before the lock: the delivered cursor only grows, so a stale read is merely conservative.
    delivered = delivery.siem_delivered_through(org)
    with transaction.atomic():
        head = lock_chain_head(chain_key(org))
        rows = events_of(org)
        first_kept = rows.filter(created_at__gte=cutoff).order_by("seq").values_list("seq", flat=True).first()
        old = rows.filter(seq__lt=first_kept) if first_kept is not None else rows
        allowed = old if delivered is None else old.filter(seq__lte=delivered)
        doomed, more = allowed, False
        if max_rows is not None:
            edge = next(iter(allowed.order_by("seq").values_list("seq", flat=True)[max_rows - 1 : max_rows]), None)
            if edge is not None:
                doomed = allowed.filter(seq__lte=edge)
                more = allowed.filter(seq__gt=edge).exists()
        held = delivered is not None and old.filter(seq__gt=delivered).exists()
        last_doomed = doomed.order_by("-seq").values_list("seq", "hash").first()
        deleted = 0
        if last_doomed is not None:
            _refuse_to_prune_a_broken_prefix(doomed, head)
            deleted, _ = doomed.delete()
            head.checkpoint_seq, head.checkpoint_hash = last_doomed
            head.save(update_fields=["checkpoint_seq", "checkpoint_hash"])
        if deleted or record_if_empty:
            detail: dict[str, Any] = {
                "days": days,
                "deleted": deleted,
                "checkpoint_seq": head.checkpoint_seq,
                "checkpoint_hash": head.checkpoint_hash,
            }
            if delivered is not None:
                detail["siem_delivered_through"] = delivered
                detail["held_for_siem"] = held
            if more:
                detail["more_to_prune"] = True
            record_event(
                org=org,
                event_type=events.AUDIT_PRUNED,
                outcome=Outcome.SUCCESS,
                actor=actor,
                context=audit_context,
                detail=detail,
            )
    return PruneResult(deleted, head.checkpoint_seq, delivered, held, more)


def _refuse_to_prune_a_broken_prefix(doomed: models.QuerySet, head: AuditChain) -> None:
    """Deleting tampered rows would destroy the evidence and leave a chain that verifies again."""
    walk = ChainWalk(head.checkpoint_seq, head.checkpoint_hash)
    for event in doomed.order_by("seq").iterator(chunk_size=VERIFY_CHUNK_ROWS):
        if broken := walk.check(event):
            raise AuditChainBroken(
                f"The audit chain is broken at seq {broken.seq} ({broken.reason}); nothing was pruned. "
                "Investigate with `manage.py verify_audit` first."
            )


def filter_events(
    rows: models.QuerySet,
    *,
    agent: str | None = None,
    event: str | None = None,
    outcome: str | None = None,
    end_user: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> models.QuerySet:
    """The audit list's filters; each is exact, `since` inclusive and `until` exclusive."""
    exact = {"agent": agent, "event_type": event, "outcome": outcome, "end_user": end_user}
    rows = rows.filter(**{field: value for field, value in exact.items() if value is not None})
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    if until is not None:
        rows = rows.filter(created_at__lt=until)
    return rows
