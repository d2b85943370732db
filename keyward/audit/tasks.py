"""Celery tasks for the audit log. They take ids, re-read rows, are idempotent and time-limited."""

import logging
from datetime import timedelta

from celery import current_app, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from keyward.audit import exports, floods, retention
from keyward.audit.writer import AuditUnavailable
from keyward.core.backoff import jittered_backoff
from keyward.core.queueing import queue_or_leave_to_sweep

logger = logging.getLogger(__name__)

# Failures worth another try: the database or the disk hiccuped, or the audit row could not be written.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, OSError, AuditUnavailable)
RETRY_BASE_SECONDS = 15
RETRY_MAX_SECONDS = 600
# When a retention run leaves old rows behind (its per-org bound), the next run starts this soon.
RETENTION_CONTINUE_SECONDS = 300


def retry_delay(retries: int) -> float:
    """Seconds before retry number `retries` + 1 of an export."""
    delay = jittered_backoff(retries + 1, base_seconds=RETRY_BASE_SECONDS, max_seconds=RETRY_MAX_SECONDS)
    return delay.total_seconds()


@shared_task(
    bind=True,
    acks_late=True,
    max_retries=exports.MAX_ATTEMPTS - 1,
    soft_time_limit=exports.WRITE_SOFT_TIME_LIMIT,
    time_limit=exports.WRITE_TIME_LIMIT,
)
def write_audit_export(self, export_id: str) -> str:
    """Write one export's file. A done, failed or expired export is left alone."""
    try:
        return exports.write_export(export_id)
    except SoftTimeLimitExceeded:
        logger.warning("audit export %s: time limit reached", export_id)
        exports.mark_failed(export_id, "timed_out")
        return "failed"
    except TRANSIENT_ERRORS as exc:
        if self.request.retries >= self.max_retries:
            logger.exception("audit export %s: giving up after %s attempts", export_id, self.request.retries + 1)
            exports.mark_failed(export_id, "export_failed")
            return "failed"
        logger.warning("audit export %s: transient failure (%s); retrying", export_id, type(exc).__name__)
        if self.request.is_eager:  # no broker to hold a delayed retry: try again now
            return self.apply((export_id,), retries=self.request.retries + 1).get()
        raise self.retry(countdown=retry_delay(self.request.retries)) from None
    except Exception:
        logger.exception("audit export %s failed", export_id)
        exports.mark_failed(export_id, "export_failed")
        return "failed"


@shared_task(soft_time_limit=240, time_limit=300)
def expire_audit_exports() -> dict[str, int]:
    """Delete expired export files (rows marked expired), and queue again exports whose task was lost."""
    return {"expired": exports.expire_due(), "requeued": exports.redispatch_stalled()}


@shared_task(soft_time_limit=1500, time_limit=1600)
def prune_audit_retention() -> dict[str, int]:
    """Prune each org's audit rows past its retention period, never past what its SIEM has received.

    Bounded per run (`retention.MAX_ROWS_PER_ORG_RUN` rows per org); if an org has more, another
    run is queued shortly. Idempotent: a run with nothing old to prune changes nothing.
    """
    outcomes = retention.apply_retention()
    if any(outcome.more for outcome in outcomes) and not current_app.conf.task_always_eager:
        follow_up = timezone.now() + timedelta(seconds=RETENTION_CONTINUE_SECONDS)
        queue_or_leave_to_sweep(prune_audit_retention, (), eta=follow_up, what="the next retention run")
    return {
        "orgs": len(outcomes),
        "deleted": sum(outcome.deleted for outcome in outcomes),
        "held_for_siem": sum(1 for outcome in outcomes if outcome.held_for_siem),
        "failed": sum(1 for outcome in outcomes if outcome.error),
    }


@shared_task(soft_time_limit=50, time_limit=60)
def summarise_floods() -> int:
    """Write the totals of flood windows that have ended (rate-limit refusals, probes); each once."""
    return floods.summarise_floods()
