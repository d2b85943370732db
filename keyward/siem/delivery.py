"""Streaming audit events to SIEMs straight from the audit table: per chain in seq order, at least once.

The audit rows are the durable outbox. One `SiemCursor` per destination per chain holds the last
`seq` the destination acknowledged. A delivery claims its cursor, reads the next rows after it
(up to BATCH_SIZE: one when keeping up, a full batch when backlogged), POSTs them signed and moves
the cursor only on a 2xx. So a crash, a timeout or a 5xx never loses or reorders a row: the same
rows go again, and receivers drop repeats by their stable `id` (`<chain>:<seq>`).

One delivery per cursor at a time keeps the order. On PostgreSQL the claim is the cursor's row lock
(`SELECT … FOR UPDATE SKIP LOCKED`), held for the batch, so a worker killed mid-POST releases it
with its connection and the next sweep resends. SQLite has no row locks and serialises every
writer, so holding a transaction across a POST there would stall issuance: the claim is a process
lock instead, and the cursor only ever moves forward (compare-and-set), so a second process at
worst resends a batch.

Deliveries are woken after every committed audit row (`audit_event_recorded`) and by `sweep_siem`
every few seconds, which finds cursors behind their chain head: that is what recovers from a broker
or worker outage. Waking never blocks issuance: a broker that cannot take the task is logged and
left to the sweep.
"""

import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DatabaseError, connection, models, transaction
from django.db.models.functions import Coalesce
from django.utils import timezone

from keyward.audit import events
from keyward.audit.export import exported_rows
from keyward.audit.models import AuditChain, Outcome, chain_key
from keyward.audit.services import events_of
from keyward.audit.writer import Actor, record_event
from keyward.core.backoff import jittered_backoff
from keyward.core.queueing import queue_or_leave_to_sweep
from keyward.crypto.errors import DecryptionError
from keyward.outbox.services import DeliveryError
from keyward.outbox.webhooks import post_signed
from keyward.siem.models import CursorState, DestinationKind, OrgSiemDestination, SiemCursor
from keyward.tenancy.models import Org
from keyward.tenancy.scoping import scope_to_org

logger = logging.getLogger(__name__)

BATCH_SIZE = 100
MAX_BATCHES_PER_RUN = 10
RUN_BUDGET_SECONDS = 60.0  # no new batch starts after this; the task then queues its own follow-up
BASE_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 300.0
SWEEP_LIMIT = 500


class RunOutcome(StrEnum):
    """How one delivery run ended."""

    UP_TO_DATE = "up_to_date"
    MORE = "more"  # stopped at its batch or time bound with rows left
    BACKING_OFF = "backing_off"
    PARKED = "parked"
    NOT_DUE = "not_due"  # backing off, and not due yet
    BUSY = "busy"  # another delivery holds the cursor
    NO_DESTINATION = "no_destination"


@dataclass(frozen=True)
class Destination:
    """Where one kind of destination posts: URL and HMAC secret. Never logged or shown whole."""

    kind: str
    url: str = field(repr=False)
    secret: bytes = field(repr=False)
    # Which sealed configuration this is (a digest of its ciphertext): a run notices a replacement.
    version: str = ""

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""


@dataclass(frozen=True)
class RunResult:
    destination: str
    chain: str
    outcome: str
    delivered: int = 0
    batches: int = 0
    last_seq: int = 0
    retry_at: datetime | None = None
    error: str = ""


def platform_destination() -> Destination | None:
    """The operator's stream (KEYWARD_SIEM_WEBHOOK_URL + _SECRET), covering every chain, or None."""
    url, secret = settings.KEYWARD_SIEM_WEBHOOK_URL, settings.KEYWARD_SIEM_WEBHOOK_SECRET
    if not url or not secret:
        return None
    return Destination(DestinationKind.PLATFORM, url, secret.encode())


def org_destination(org_id: int) -> Destination | None:
    """An org's own stream, unsealed (raises DecryptionError if its seal cannot be opened)."""
    row = scope_to_org(OrgSiemDestination.objects.select_related("org"), org_id).first()
    if row is None:
        return None
    url, secret = row.unseal_destination()
    return Destination(DestinationKind.ORG, url, secret.encode(), _version(row.ciphertext))


def _version(ciphertext: bytes | memoryview) -> str:
    return hashlib.sha256(bytes(ciphertext)).hexdigest()


def _current(destination: Destination, org_id: int | None) -> Destination | None:
    """The destination as configured now (None: removed). An owner may replace it while a run is
    under way (a new URL, a rotated secret); no batch after that may go to the old one."""
    if destination.kind != DestinationKind.ORG:
        return destination
    ciphertext = scope_to_org(OrgSiemDestination.objects, org_id).values_list("ciphertext", flat=True).first()
    if ciphertext is None:
        return None
    if _version(ciphertext) == destination.version:
        return destination
    return org_destination(org_id)


def destination_for(kind: str, org_id: int | None) -> Destination | None:
    if kind == DestinationKind.PLATFORM:
        return platform_destination()
    if kind == DestinationKind.ORG and org_id is not None:
        return org_destination(org_id)
    return None


def kinds_covering(org_id: int | None) -> list[str]:
    """The destinations that receive a chain: the platform's (every chain) and the org's own."""
    kinds = []
    if platform_destination() is not None:
        kinds.append(DestinationKind.PLATFORM)
    if org_id is not None and scope_to_org(OrgSiemDestination.objects, org_id).exists():
        kinds.append(DestinationKind.ORG)
    return kinds


def ensure_cursor(kind: str, org_id: int | None) -> SiemCursor:
    """The cursor of one destination on one chain, created at 0 (the start of the retained log)."""
    chain = chain_key(org_id)
    cursor = SiemCursor.objects.filter(destination=kind, chain=chain).first()
    if cursor is None:
        # ON CONFLICT DO NOTHING: a concurrent first delivery may create it; either way we then read it.
        SiemCursor.objects.bulk_create(
            [SiemCursor(destination=kind, chain=chain, org_id=org_id)], ignore_conflicts=True
        )
        cursor = SiemCursor.objects.get(destination=kind, chain=chain)
    return cursor


def backoff(attempts: int) -> timedelta:
    return jittered_backoff(attempts, base_seconds=BASE_BACKOFF_SECONDS, max_seconds=MAX_BACKOFF_SECONDS)


_process_locks: dict[int, threading.Lock] = {}
_process_locks_guard = threading.Lock()


@contextmanager
def _claimed(cursor_id: int) -> Iterator[SiemCursor | None]:
    """The cursor, held by this delivery for one batch; None when another delivery holds it."""
    if connection.features.has_select_for_update_skip_locked:
        with transaction.atomic():
            yield SiemCursor.objects.select_for_update(skip_locked=True).filter(pk=cursor_id).first()
        return
    with _process_locks_guard:
        lock = _process_locks.setdefault(cursor_id, threading.Lock())
    if not lock.acquire(blocking=False):
        yield None
        return
    try:
        yield SiemCursor.objects.filter(pk=cursor_id).first()
    finally:
        lock.release()


def deliver(kind: str, org_id: int | None, *, force: bool = False) -> RunResult:
    """Deliver one destination's backlog on one chain, batch after batch, within this run's bounds.

    `force` ignores a backoff's wait (an operator's "now"); a parked cursor stays parked.
    Safe to call any number of times, concurrently: it only ever resends, never skips.
    """
    chain = chain_key(org_id)
    org = Org.objects.filter(pk=org_id).first() if org_id is not None else None
    if org_id is not None and org is None:
        return RunResult(kind, chain, RunOutcome.NO_DESTINATION)
    try:
        destination = destination_for(kind, org_id)
    except DecryptionError as exc:  # the message names the object, never key material
        logger.error("siem: cannot open the %s destination of %s: %s", kind, chain, exc)
        return _secret_unavailable(kind, org_id)
    if destination is None:
        return RunResult(kind, chain, RunOutcome.NO_DESTINATION)
    cursor_id = ensure_cursor(kind, org_id).pk
    delivered = batches = 0
    started = time.monotonic()
    while True:
        with _claimed(cursor_id) as cursor:
            if cursor is None:
                return RunResult(kind, chain, RunOutcome.BUSY, delivered, batches)
            progress = {"delivered": delivered, "batches": batches, "last_seq": cursor.last_seq}
            if cursor.state == CursorState.PARKED:
                return RunResult(kind, chain, RunOutcome.PARKED, error=cursor.last_error, **progress)
            now = timezone.now()
            if not force and cursor.next_attempt_at > now:
                return RunResult(kind, chain, RunOutcome.NOT_DUE, retry_at=cursor.next_attempt_at, **progress)
            try:
                destination = _current(destination, org_id)
            except DecryptionError as exc:
                logger.error("siem: cannot open the %s destination of %s: %s", kind, chain, exc)
                _failed(cursor, DeliveryError("secret_unavailable"), org=None, host="")
                return _after_failure(kind, chain, cursor, progress)
            if destination is None:
                return RunResult(kind, chain, RunOutcome.NO_DESTINATION, **progress)
            rows = _next_batch(org, chain, cursor.last_seq)
            if not rows:
                return RunResult(kind, chain, RunOutcome.UP_TO_DATE, **progress)
            first, last = rows[0]["seq"], rows[-1]["seq"]
            try:
                post_signed(
                    destination.url,
                    {"events": rows},
                    secret=destination.secret,
                    event_id=f"{chain}:{first}-{last}",
                )
            except DeliveryError as exc:
                _failed(cursor, exc, org=org, host=destination.host, first=first, last=last)
                return _after_failure(kind, chain, cursor, progress)
            if not _advanced(cursor, last, now):
                # Removed meanwhile (its cursor went with it), or another delivery moved the cursor.
                gone = not SiemCursor.objects.filter(pk=cursor_id).exists()
                outcome = RunOutcome.NO_DESTINATION if gone else RunOutcome.BUSY
                return RunResult(kind, chain, outcome, delivered, batches, cursor.last_seq)
            delivered, batches = delivered + len(rows), batches + 1
        if batches >= MAX_BATCHES_PER_RUN or time.monotonic() - started >= RUN_BUDGET_SECONDS:
            outcome = RunOutcome.MORE if _is_behind(cursor_id) else RunOutcome.UP_TO_DATE
            return RunResult(kind, chain, outcome, delivered, batches, last)


def _next_batch(org: Org | None, chain: str, after: int) -> list[dict]:
    """The next rows in seq order, in the audit export's shape plus a stable `id` for de-duplication.

    Committed rows of a chain always form a gap-free prefix (each append holds the chain head's lock
    until it commits), so reading past `after` never skips a row that commits later.
    """
    rows = events_of(org).filter(seq__gt=after).order_by("seq")[:BATCH_SIZE]
    return [{**row, "id": f"{chain}:{row['seq']}"} for row in exported_rows(rows)]


def _advanced(cursor: SiemCursor, last_seq: int, now: datetime) -> bool:
    """Move the cursor forward (only forward: compare-and-set on the seq this batch started from)."""
    return bool(
        SiemCursor.objects.filter(pk=cursor.pk, last_seq=cursor.last_seq).update(
            last_seq=last_seq,
            state=CursorState.OK,
            attempts=0,
            next_attempt_at=now,
            last_error="",
            parked_at=None,
            last_delivered_at=now,
        )
    )


def _failed(
    cursor: SiemCursor, error: DeliveryError, *, org: Org | None, host: str, first: int = 0, last: int = 0
) -> None:
    """5xx/429/timeouts back off (nothing moves); any other 4xx parks the cursor until a human retries."""
    now = timezone.now()
    cursor.attempts += 1
    cursor.last_error = error.code[:200]
    if error.retryable:
        cursor.state, cursor.next_attempt_at = CursorState.BACKING_OFF, now + backoff(cursor.attempts)
        logger.warning(
            "siem: %s delivery of %s failed (%s, attempt %s); retrying after %s",
            cursor.destination,
            cursor.chain,
            cursor.last_error,
            cursor.attempts,
            cursor.next_attempt_at.isoformat(),
        )
    else:
        cursor.state, cursor.parked_at = CursorState.PARKED, now
        logger.error("siem: %s delivery of %s parked (%s)", cursor.destination, cursor.chain, cursor.last_error)
    SiemCursor.objects.filter(pk=cursor.pk, last_seq=cursor.last_seq).update(
        attempts=cursor.attempts,
        last_error=cursor.last_error,
        state=cursor.state,
        next_attempt_at=cursor.next_attempt_at,
        parked_at=cursor.parked_at,
    )
    if cursor.state == CursorState.PARKED and cursor.destination == DestinationKind.ORG and org is not None:
        # The org's admins see it in their own log; the operator's stream is the operator's business.
        record_event(
            org=org,
            event_type=events.SIEM_DELIVERY_PARKED,
            outcome=Outcome.FAILURE,
            reason_code="siem_refused",
            actor=Actor.system("siem-delivery"),
            detail={"host": host, "error": cursor.last_error, "first_seq": first, "last_seq": last},
        )


def _secret_unavailable(kind: str, org_id: int | None) -> RunResult:
    """A seal that will not open (a master key missing from the environment) is retried, not parked:
    it heals when the operator fixes the configuration."""
    chain = chain_key(org_id)
    with _claimed(ensure_cursor(kind, org_id).pk) as cursor:
        if cursor is None:
            return RunResult(kind, chain, RunOutcome.BUSY)
        progress = {"last_seq": cursor.last_seq}
        if cursor.state == CursorState.PARKED:
            return RunResult(kind, chain, RunOutcome.PARKED, error=cursor.last_error, **progress)
        _failed(cursor, DeliveryError("secret_unavailable"), org=None, host="")
        return _after_failure(kind, chain, cursor, progress)


def _after_failure(kind: str, chain: str, cursor: SiemCursor, progress: dict) -> RunResult:
    if cursor.state == CursorState.PARKED:
        return RunResult(kind, chain, RunOutcome.PARKED, error=cursor.last_error, **progress)
    return RunResult(
        kind, chain, RunOutcome.BACKING_OFF, retry_at=cursor.next_attempt_at, error=cursor.last_error, **progress
    )


def _heads() -> models.QuerySet:
    return AuditChain.objects.filter(key=models.OuterRef("chain")).values("last_seq")[:1]


def _is_behind(cursor_id: int) -> bool:
    return (
        SiemCursor.objects.filter(pk=cursor_id)
        .annotate(head=models.Subquery(_heads()))
        .filter(head__gt=models.F("last_seq"))
        .exists()
    )


def configured_cursors(org: Org | None = None) -> models.QuerySet:
    """Cursors of destinations that exist now, with `head` (the chain's last seq) annotated.

    Makes sure the platform destination has a cursor on every chain first (chains appear as orgs
    do). `org` narrows to one org's chain.
    """
    kinds = []
    if platform_destination() is not None:
        kinds.append(DestinationKind.PLATFORM)
        known = SiemCursor.objects.filter(destination=DestinationKind.PLATFORM).values("chain")
        missing = AuditChain.objects.exclude(key__in=known).values_list("key", flat=True)
        SiemCursor.objects.bulk_create(
            [SiemCursor(destination=DestinationKind.PLATFORM, chain=key, org_id=_org_id(key)) for key in missing],
            ignore_conflicts=True,
        )
    cursors = SiemCursor.objects.filter(
        models.Q(destination__in=kinds) | models.Q(destination=DestinationKind.ORG, org__siem_destination__isnull=False)
    )
    if org is not None:
        cursors = cursors.filter(chain=chain_key(org))
    return cursors.annotate(head=Coalesce(models.Subquery(_heads()), 0)).select_related("org")


def _org_id(key: str) -> int | None:
    return int(key.split(":", 1)[1]) if key.startswith("org:") else None


def due_cursors(now: datetime | None = None) -> list[tuple[str, int | None]]:
    """(destination, org id) of cursors behind their chain head and due: what the sweep wakes."""
    cursors = configured_cursors()  # creates missing cursors first, due from now on
    due = (
        cursors.filter(head__gt=models.F("last_seq"), next_attempt_at__lte=now or timezone.now())
        .exclude(state=CursorState.PARKED)
        .order_by("next_attempt_at")
        .values_list("destination", "org_id")[:SWEEP_LIMIT]
    )
    return list(due)


def dispatch(kind: str, org_id: int | None, *, eta: datetime | None = None) -> bool:
    """Queue a delivery (in eager mode: run it now). Never raises; the sweep covers a refusal."""
    from keyward.siem.tasks import deliver_siem

    return queue_or_leave_to_sweep(deliver_siem, (kind, org_id), eta=eta, what=f"SIEM delivery for {chain_key(org_id)}")


def on_audit_event_recorded(sender, *, chain: str, org_id: int | None, seq: int, **kwargs) -> None:
    """After an audit row commits: wake each destination covering its chain, unless it is waiting
    (parked, or backing off and not due), which would only queue deliveries that do nothing."""
    try:
        kinds = kinds_covering(org_id)
        if not kinds:
            return
        now = timezone.now()
        waiting = {
            destination
            for destination, state, next_attempt_at in SiemCursor.objects.filter(
                chain=chain, destination__in=kinds
            ).values_list("destination", "state", "next_attempt_at")
            if state == CursorState.PARKED or next_attempt_at > now
        }
    except DatabaseError:
        logger.warning("siem: could not look up destinations for %s; the sweep will deliver", chain, exc_info=True)
        return
    for kind in kinds:
        if kind not in waiting:
            dispatch(kind, org_id)
