"""Background audit exports: request, write (in a worker), hand out a short-lived link, serve, expire.

There is no row cap: the worker streams the fixed seq window through `keyward.audit.export` with
`.iterator()` into a file, so memory stays flat however many rows there are. Files are named by
the export's random id, live under `KEYWARD_EXPORT_DIR`, and are deleted when they expire.

A download link carries a `TimestampSigner` signature over the export id, its org and the account
the link was handed to; the signature alone authorises the download (so a browser or curl can
fetch it), but only of that export and only for `KEYWARD_EXPORT_LINK_TTL` seconds.
"""

import hashlib
import logging
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO
from urllib.parse import urlencode

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from keyward.audit import events
from keyward.audit.export import STREAM_CHUNK_ROWS, RowTally, stream_csv, stream_json
from keyward.audit.models import AuditChain, AuditExport, ExportFormat, ExportStatus, Outcome, chain_key
from keyward.audit.services import events_of
from keyward.audit.writer import AccountLike, Actor, AuditContext, record_event
from keyward.core.exceptions import Forbidden, NotFound, RateLimited, ServiceError
from keyward.core.queueing import queue_or_leave_to_sweep
from keyward.tenancy.models import Org
from keyward.tenancy.scoping import scope_to_org

logger = logging.getLogger(__name__)

EXPORT_ID = re.compile(r"^exp_[0-9a-f]{32}$")
# Rows per database fetch and per file write; tests lower it to exercise many chunks with few rows.
EXPORT_CHUNK_ROWS = STREAM_CHUNK_ROWS
# Pending or running exports per org: each one is a full copy of the log on disk.
MAX_IN_FLIGHT_PER_ORG = 3
IN_FLIGHT_RETRY_AFTER = 30
# Finished files kept per org until they expire: without a cap, a viewer could fill the disk.
MAX_KEPT_PER_ORG = 10
KEPT_RETRY_AFTER = 900
MAX_ATTEMPTS = 5
# The writer task's limits (keyward.audit.tasks). A running claim older than the hard limit was
# lost with its worker, so the export may be claimed again.
WRITE_SOFT_TIME_LIMIT = 1800
WRITE_TIME_LIMIT = 1900
STALE_CLAIM = timedelta(seconds=WRITE_TIME_LIMIT + 60)
# A pending export whose task was lost (broker down when it was queued) is queued again after this.
REDISPATCH_AFTER = timedelta(minutes=5)
SWEEP_BATCH = 200
LINK_SALT = "keyward.audit.export-download"
SYSTEM_ACTOR = Actor.system("audit-export")


class ExportGone(ServiceError):
    status_code = 410
    code = "export_expired"


def new_export_id() -> str:
    return f"exp_{secrets.token_hex(16)}"


def export_dir() -> Path:
    return Path(settings.KEYWARD_EXPORT_DIR)


def export_path(export: AuditExport) -> Path:
    """The finished file: named by the random id and a known format, never by anything a caller sent."""
    if not EXPORT_ID.match(export.id) or export.format not in ExportFormat.values:
        raise ValueError("not an export id")
    return export_dir() / f"{export.id}.{export.format}"


def _partial_path(export: AuditExport) -> Path:
    """Where one attempt writes before the file is complete (renamed into place when done)."""
    return export_path(export).with_name(f".{export.id}.{export.attempts}.partial")


def _remove_files(export: AuditExport) -> None:
    export_path(export).unlink(missing_ok=True)
    for leftover in export_dir().glob(f".{export.id}.*.partial"):
        leftover.unlink(missing_ok=True)


# --- requesting ----------------------------------------------------------------------------------


def request_export(
    org: Org,
    *,
    format: str,
    since: int,
    until: int | None,
    actor: AccountLike,
    audit_context: AuditContext | None = None,
) -> AuditExport:
    """Record an export of rows `since < seq <= until` and queue it once the transaction commits.

    `until` defaults to (and is capped at) the chain's last row at this moment, so the window is
    fixed: rows written later, this request's own audit row included, are not part of it.
    """
    now = timezone.now()
    with transaction.atomic():
        # The org row lock makes the in-flight count exact under concurrent requests
        # (no_key: ARCHITECTURE.md, "org row locks").
        Org.objects.select_for_update(no_key=True).filter(pk=org.pk).first()
        unexpired = scope_to_org(AuditExport.objects.all(), org).filter(expires_at__gt=now)
        if unexpired.filter(status__in=[ExportStatus.PENDING, ExportStatus.RUNNING]).count() >= MAX_IN_FLIGHT_PER_ORG:
            raise RateLimited(
                f"This org already has {MAX_IN_FLIGHT_PER_ORG} exports in progress; wait for one to finish.",
                retry_after=IN_FLIGHT_RETRY_AFTER,
                code="too_many_exports",
            )
        if unexpired.exclude(status=ExportStatus.FAILED).count() >= MAX_KEPT_PER_ORG:
            raise RateLimited(
                f"This org already keeps {MAX_KEPT_PER_ORG} export files; use one of them or wait for the oldest "
                "to expire.",
                retry_after=KEPT_RETRY_AFTER,
                code="too_many_exports",
            )
        head = AuditChain.objects.filter(key=chain_key(org)).values_list("last_seq", flat=True).first() or 0
        until = max(since, head if until is None else min(until, head))
        export = AuditExport.objects.create(
            id=new_export_id(),
            org=org,
            format=format,
            since_seq=since,
            until_seq=until,
            requested_by=actor.email,
            created_at=now,
            expires_at=now + timedelta(seconds=settings.KEYWARD_EXPORT_TTL),
        )
        record_event(
            org=org,
            event_type=events.AUDIT_EXPORT_REQUESTED,
            outcome=Outcome.SUCCESS,
            actor=actor,
            context=audit_context,
            detail={"export_id": export.id, "format": format, "since": since, "until": until},
        )
        transaction.on_commit(lambda: dispatch(export.id))
    return export


def dispatch(export_id: str) -> None:
    """Hand an export to Celery. If the broker is unreachable, the periodic sweep queues it later."""
    from keyward.audit.tasks import write_audit_export

    queue_or_leave_to_sweep(write_audit_export, (export_id,), what=f"audit export {export_id}")


# --- writing (in the worker) ---------------------------------------------------------------------


def claim(export_id: str) -> AuditExport | None:
    """Take an export to write: pending, or running under a claim lost with its worker. Else None.

    A conditional UPDATE, so two workers handed the same export never both write it.
    """
    now = timezone.now()
    claimable = Q(status=ExportStatus.PENDING) | Q(status=ExportStatus.RUNNING, started_at__lt=now - STALE_CLAIM)
    taken = AuditExport.objects.filter(claimable, pk=export_id, expires_at__gt=now, attempts__lt=MAX_ATTEMPTS).update(
        status=ExportStatus.RUNNING, started_at=now, attempts=F("attempts") + 1
    )
    if not taken:
        _fail_if_out_of_attempts(export_id)
        return None
    return AuditExport.objects.select_related("org").get(pk=export_id)


def write_export(export_id: str) -> str:
    """Write one export's file if it is still to be written; returns the export's status after.

    Safe to call any number of times: a done, failed or expired export is left alone.
    """
    export = claim(export_id)
    if export is None:
        return AuditExport.objects.filter(pk=export_id).values_list("status", flat=True).first() or "missing"
    rows = events_of(export.org).filter(seq__gt=export.since_seq, seq__lte=export.until_seq).order_by("seq")
    tally = RowTally()
    stream = stream_csv if export.format == ExportFormat.CSV else stream_json
    partial = _partial_path(export)
    digest, size = hashlib.sha256(), 0
    try:
        export_dir().mkdir(mode=0o700, parents=True, exist_ok=True)
        partial.unlink(missing_ok=True)
        with _create_private(partial) as out:
            for piece in stream(rows, chunk_rows=EXPORT_CHUNK_ROWS, tally=tally):
                data = piece.encode()
                out.write(data)
                digest.update(data)
                size += len(data)
            out.flush()
            os.fsync(out.fileno())
        return _finish(export, partial, tally.rows, size, digest.hexdigest())
    except BaseException:
        # Give the claim back (the caller retries or fails the export); never leave a partial file.
        partial.unlink(missing_ok=True)
        AuditExport.objects.filter(pk=export.pk, status=ExportStatus.RUNNING, attempts=export.attempts).update(
            status=ExportStatus.PENDING
        )
        raise


def _create_private(path: Path) -> IO[bytes]:
    """A new file only this user can read (the audit log is sensitive)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def _finish(export: AuditExport, partial: Path, rows: int, size: int, sha256: str) -> str:
    """Move the file into place and mark the export done, only if this attempt still holds the claim."""
    with transaction.atomic():
        current = (
            AuditExport.objects.select_for_update()
            .filter(pk=export.pk, status=ExportStatus.RUNNING, attempts=export.attempts)
            .first()
        )
        if current is None:
            partial.unlink(missing_ok=True)
            return AuditExport.objects.filter(pk=export.pk).values_list("status", flat=True).first() or "missing"
        os.replace(partial, export_path(export))
        now = timezone.now()
        current.status, current.error = ExportStatus.DONE, ""
        current.row_count, current.size_bytes, current.sha256 = rows, size, sha256
        current.finished_at = now
        current.expires_at = now + timedelta(seconds=settings.KEYWARD_EXPORT_TTL)
        current.save(
            update_fields=["status", "error", "row_count", "size_bytes", "sha256", "finished_at", "expires_at"]
        )
        record_event(
            org=export.org,
            event_type=events.AUDIT_EXPORT_COMPLETED,
            outcome=Outcome.SUCCESS,
            actor=SYSTEM_ACTOR,
            context=AuditContext(),
            detail={"export_id": export.id, "rows": rows, "size_bytes": size, "sha256": sha256},
        )
    return ExportStatus.DONE


def mark_failed(export_id: str, code: str) -> None:
    """Record that an export failed for good (`code` is a fixed word, never an exception's text)."""
    with transaction.atomic():
        export = (
            AuditExport.objects.select_for_update()
            .select_related("org")
            .filter(pk=export_id, status__in=[ExportStatus.PENDING, ExportStatus.RUNNING])
            .first()
        )
        if export is None:
            return
        _remove_files(export)
        export.status, export.error, export.finished_at = ExportStatus.FAILED, code, timezone.now()
        export.save(update_fields=["status", "error", "finished_at"])
        record_event(
            org=export.org,
            event_type=events.AUDIT_EXPORT_FAILED,
            outcome=Outcome.FAILURE,
            reason_code=code,
            actor=SYSTEM_ACTOR,
            context=AuditContext(),
            detail={"export_id": export.id, "attempts": export.attempts},
        )


def _fail_if_out_of_attempts(export_id: str) -> None:
    """An export whose every attempt died with its worker (hard time limit) fails instead of looping."""
    stuck = AuditExport.objects.filter(
        pk=export_id,
        attempts__gte=MAX_ATTEMPTS,
        status__in=[ExportStatus.PENDING, ExportStatus.RUNNING],
    ).exclude(status=ExportStatus.RUNNING, started_at__gte=timezone.now() - STALE_CLAIM)
    if stuck.exists():
        mark_failed(export_id, "too_many_attempts")


# --- links and downloads -------------------------------------------------------------------------


@dataclass(frozen=True)
class DownloadLink:
    url: str
    expires_at: datetime


# What `_signer().sign_object` produces: URL-safe base64, `.` and `:` (the schema states it for `sig`).
SIGNATURE_PATTERN = r"^[A-Za-z0-9_.:-]{1,1000}$"


def _signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=LINK_SALT)


def download_link(export: AuditExport, account: AccountLike) -> DownloadLink | None:
    """A link to a finished export's file, valid for KEYWARD_EXPORT_LINK_TTL seconds; None before then."""
    now = timezone.now()
    if export.status != ExportStatus.DONE or export.expires_at <= now:
        return None
    signature = _signer().sign_object({"e": export.id, "o": export.org_id, "a": str(account.pk)})
    path = reverse("audit-export-download", kwargs={"export_id": export.id})
    expires_at = min(now + timedelta(seconds=settings.KEYWARD_EXPORT_LINK_TTL), export.expires_at)
    return DownloadLink(url=f"{path}?{urlencode({'sig': signature})}", expires_at=expires_at)


@dataclass
class Download:
    export: AuditExport
    file: IO[bytes]
    filename: str


def open_download(export_id: str, signature: str, *, audit_context: AuditContext | None = None) -> Download:
    """Check a download link and open the file; the download is audited before a byte is sent.

    403 `invalid_signature` for a signature that was tampered with or made for another export,
    410 `link_expired` for one older than KEYWARD_EXPORT_LINK_TTL, 410 `export_expired` once the
    file has expired.
    """
    try:
        claims = _signer().unsign_object(signature, max_age=settings.KEYWARD_EXPORT_LINK_TTL)
    except signing.SignatureExpired:
        raise ServiceError(
            "This download link has expired; fetch the export's status for a new one.",
            code="link_expired",
            status_code=410,
        ) from None
    except signing.BadSignature:
        raise Forbidden("This download link is not valid.", code="invalid_signature") from None
    if not isinstance(claims, dict) or claims.get("e") != export_id or not EXPORT_ID.match(export_id):
        raise Forbidden("This download link is not valid.", code="invalid_signature")
    org = Org.objects.filter(pk=claims.get("o")).first()  # the org the link was signed for
    export = (
        None
        if org is None
        else scope_to_org(AuditExport.objects.select_related("org"), org).filter(pk=export_id).first()
    )
    if export is None:
        raise NotFound("No such export.")
    if export.status == ExportStatus.EXPIRED or export.expires_at <= timezone.now():
        raise ExportGone("This export has expired and its file was deleted; request a new export.")
    if export.status != ExportStatus.DONE:
        raise ServiceError("This export is not finished.", code="export_not_ready", status_code=409)
    try:
        file = export_path(export).open("rb")
    except FileNotFoundError:
        raise ExportGone("This export's file is no longer available; request a new export.") from None
    try:
        record_event(
            org=export.org,
            event_type=events.AUDIT_EXPORT_DOWNLOADED,
            outcome=Outcome.SUCCESS,
            actor=Actor.anonymous("signed download link", account_id=claims.get("a")),
            context=audit_context,
            detail={"export_id": export.id},
        )
        AuditExport.objects.filter(pk=export.pk).update(downloads=F("downloads") + 1)
    except BaseException:
        file.close()
        raise
    first, last = export.since_seq, export.until_seq
    return Download(export, file, f"audit-{export.org.slug}-{first}-{last}.{export.format}")


# --- expiry and the sweep ------------------------------------------------------------------------


def expire_due(now: datetime | None = None) -> int:
    """Delete the files of exports past `expires_at` and mark them expired (bounded batch, idempotent)."""
    now = now or timezone.now()
    due = list(
        AuditExport.objects.filter(expires_at__lte=now)
        .exclude(status=ExportStatus.EXPIRED)
        .order_by("expires_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    expired = 0
    for export_id in due:
        with transaction.atomic():
            export = (
                AuditExport.objects.select_for_update()
                .select_related("org")
                .filter(pk=export_id, expires_at__lte=now)
                .exclude(status=ExportStatus.EXPIRED)
                .first()
            )
            if export is None:
                continue
            _remove_files(export)
            previous, export.status = export.status, ExportStatus.EXPIRED
            export.save(update_fields=["status"])
            record_event(
                org=export.org,
                event_type=events.AUDIT_EXPORT_EXPIRED,
                outcome=Outcome.SUCCESS,
                actor=SYSTEM_ACTOR,
                context=AuditContext(),
                detail={"export_id": export.id, "previous_status": previous},
            )
            expired += 1
    return expired


def redispatch_stalled(now: datetime | None = None) -> int:
    """Queue again exports whose task was lost: pending for a while, or running under a dead claim."""
    now = now or timezone.now()
    stalled = list(
        AuditExport.objects.filter(expires_at__gt=now)
        .filter(
            Q(status=ExportStatus.PENDING, created_at__lt=now - REDISPATCH_AFTER)
            | Q(status=ExportStatus.RUNNING, started_at__lt=now - STALE_CLAIM)
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    for export_id in stalled:
        dispatch(export_id)
    return len(stalled)
