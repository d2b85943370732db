"""Retention: pruning old audit rows in short batches, per org, never past what a SIEM has received.

Every batch goes through `services.prune` (checkpoint kept, `audit.pruned` row written, SIEM cursor
respected), each in its own transaction, so the org's chain lock, which credential issuance also
takes, is never held for long.
"""

import logging
from dataclasses import dataclass

from celery.exceptions import SoftTimeLimitExceeded

from keyward.audit import services
from keyward.audit.writer import Actor
from keyward.tenancy.models import Org

logger = logging.getLogger(__name__)

BATCH_ROWS = 5_000
# Per org per retention run; an org with more old rows continues in the next run.
MAX_ROWS_PER_ORG_RUN = 100_000
RETENTION_ACTOR = Actor.system("audit-retention")


@dataclass(frozen=True)
class OrgPrune:
    """The outcome of pruning one org: rows deleted over all batches, and what had to stay."""

    org: Org
    days: int
    deleted: int
    checkpoint_seq: int
    siem_delivered_through: int | None
    held_for_siem: bool
    more: bool
    error: str = ""


def prune_org(org: Org, days: int, *, actor: Actor, max_rows: int | None = None) -> OrgPrune:
    """Delete `org`'s rows older than `days` in batches of BATCH_ROWS, up to `max_rows` (None: all).

    Idempotent: a second run finds nothing to delete and writes no audit row.
    """
    deleted = 0
    while True:
        budget = BATCH_ROWS if max_rows is None else min(BATCH_ROWS, max_rows - deleted)
        result = services.prune(org=org, days=days, actor=actor, max_rows=budget, record_if_empty=False)
        deleted += result.deleted
        capped = max_rows is not None and deleted >= max_rows
        if not result.more or not result.deleted or capped:
            return OrgPrune(
                org=org,
                days=days,
                deleted=deleted,
                checkpoint_seq=result.checkpoint_seq,
                siem_delivered_through=result.siem_delivered_through,
                held_for_siem=result.held_for_siem,
                more=result.more,
            )


def apply_retention(max_rows_per_org: int | None = None) -> list[OrgPrune]:
    """Prune every org that has a retention period (`Org.audit_retention_days`) to that period.

    At most `max_rows_per_org` rows per org (default MAX_ROWS_PER_ORG_RUN), so a run is bounded.

    One org's failure is logged and reported without stopping the others; a time limit stops the
    run (the batch in progress rolls back; the next run carries on).
    """
    max_rows_per_org = max_rows_per_org or MAX_ROWS_PER_ORG_RUN
    outcomes = []
    orgs = Org.objects.filter(audit_retention_days__isnull=False).order_by("pk")
    for org in orgs.iterator():
        days = max(org.audit_retention_days, services.min_prune_days())  # the floor may have risen since
        try:
            outcome = prune_org(org, days, actor=RETENTION_ACTOR, max_rows=max_rows_per_org)
        except SoftTimeLimitExceeded:
            raise
        except services.AuditChainBroken as exc:
            logger.error("audit retention: org %s not pruned: %s", org.slug, exc)
            outcome = OrgPrune(org, days, 0, 0, None, False, False, error=exc.code)
        except Exception as exc:
            logger.exception("audit retention: pruning org %s failed", org.slug)
            outcome = OrgPrune(org, days, 0, 0, None, False, False, error=type(exc).__name__)
        if outcome.held_for_siem:
            logger.warning(
                "audit retention: org %s keeps rows after seq %s until every SIEM destination has them",
                org.slug,
                outcome.siem_delivered_through,
            )
        outcomes.append(outcome)
    return outcomes
