"""Auditing what arrives in floods: a full row for the first of its key and window, then a count.

Cheap refusals (a broker limit, a probe for another org's ids) must leave a trace without letting
anyone drive the audit log, or the chain lock every write takes, at the rate they can send
requests. So the first per key and window (KEYWARD_REFUSAL_AUDIT_WINDOW seconds) is audited in full
by the caller, the rest are only counted (keyward.core.ratelimit: atomic in Redis, per process
without it), and once the window has ended one summary row gives the total. Beat's
`summarise_floods` writes the summaries every minute; the first event of any new window also
drains what has ended, so a single process without beat (dev mode) still writes them.

A flood's `facts` name its key and its summary row: `org` (id or None for the platform chain),
`event` (the summary's event type), `code` (its reason code), optionally `agent`, `end_user`, `ip`
and `detail` (a small dict copied into the summary's detail).
"""

import logging
from datetime import UTC, datetime

from django.conf import settings

from keyward.audit.models import Outcome
from keyward.audit.writer import Actor, AuditContext, record_committed_event
from keyward.core import ratelimit
from keyward.tenancy.models import Org

logger = logging.getLogger(__name__)

SUMMARY_ACTOR = Actor.system("flood-summary")


def window_seconds() -> int:
    return settings.KEYWARD_REFUSAL_AUDIT_WINDOW


def first_in_window(facts: dict) -> bool:
    """Count one event of the flood `facts` names; True for the first of its window (audit it in full)."""
    count = ratelimit.count_in_window(facts, window_seconds=window_seconds())
    if count == 1:
        try:
            summarise_floods()
        except Exception:  # the event at hand is audited regardless; the log keeps what was lost
            logger.exception("flood summaries could not be written")
        return True
    logger.debug("%s: event %d of this window, counted only: %s", facts.get("event"), count, facts)
    return False


def summarise_floods() -> int:
    """One summary row per ended window that counted more than one event. Returns the rows written."""
    written = 0
    for facts, count in ratelimit.drain_closed_windows():
        if count < 2:
            continue  # the window's one event has its own full row already
        org = Org.objects.filter(pk=facts["org"]).first() if facts.get("org") else None
        if facts.get("org") and org is None:
            continue  # the org is gone, and its chain with it
        started = datetime.fromtimestamp(facts["window"] * facts["seconds"], tz=UTC)
        logger.info("flood summary: %s counted %d in the window from %s", facts.get("event"), count, started)
        record_committed_event(
            org=org,
            event_type=facts["event"],
            outcome=Outcome.DENIED,
            reason_code=facts["code"],
            actor=SUMMARY_ACTOR,
            context=AuditContext(ip=facts.get("ip", "")),
            agent=facts.get("agent", ""),
            end_user=facts.get("end_user", ""),
            detail={
                **facts.get("detail", {}),
                "count": count,
                "window_start": started.isoformat().replace("+00:00", "Z"),
                "window_seconds": facts["seconds"],
            },
        )
        written += 1
    return written
