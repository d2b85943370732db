"""The broker's limits: who may ask how often, and how refusals under a flood are audited.

- per source address, a budget of requests that prove nothing (400 / 401): an address that spent
  it is refused (429) before its request is even parsed, and before any audit row;
- per end user and per agent, token buckets (429 `rate_limited`);
- per agent, a cap on live credentials (429 `too_many_outstanding`);
- per introspection key, a token bucket.

Limits come from the agent, else its org, else the platform settings (KEYWARD_BROKER_*). The
buckets are atomic in Redis (keyward.core.ratelimit; per process while Redis is down).

A limit's refusals are audited in aggregate (keyward.audit.floods): the first per key and window
is a full audit row (`detail.aggregated: true`), the rest are only counted, and once the window has
ended one `rate_limit.summary` row gives the window's total (`detail.count`).
"""

import hashlib
import logging

from django.conf import settings
from django.utils import timezone

from broker.models import IntrospectionKey, IssuedCredential
from broker.refusals import LimitExceeded, TooManyOutstanding
from keyward.agents.models import Agent
from keyward.audit import floods
from keyward.audit.models import Outcome
from keyward.audit.writer import Actor, record_committed_event
from keyward.core import ratelimit
from keyward.core.net import address_bucket
from keyward.tenancy.models import Org

logger = logging.getLogger(__name__)

# Refusals of requests that prove nothing about the caller: they spend the source's budget.
UNPROVEN_CODES = frozenset({"invalid_request", "invalid_user_token", "invalid_delegation"})
SUMMARY_EVENT = "rate_limit.summary"
INTROSPECTION_REFUSED_EVENT = "introspection.rate_limited"


def _first(*values: int | None) -> int:
    return next(value for value in values if value is not None)


def source_limit() -> ratelimit.Limit:
    return ratelimit.Limit(settings.KEYWARD_BROKER_UNPROVEN_PER_MINUTE, settings.KEYWARD_BROKER_UNPROVEN_BURST)


def end_user_limit(org: Org) -> ratelimit.Limit:
    return ratelimit.Limit(
        _first(org.broker_rate_per_end_user, settings.KEYWARD_BROKER_END_USER_RATE_PER_MINUTE),
        _first(org.broker_burst_per_end_user, settings.KEYWARD_BROKER_END_USER_BURST),
    )


def agent_limit(agent: Agent) -> ratelimit.Limit:
    return ratelimit.Limit(
        _first(agent.rate_per_minute, agent.org.broker_rate_per_agent, settings.KEYWARD_BROKER_AGENT_RATE_PER_MINUTE),
        _first(agent.burst, agent.org.broker_burst_per_agent, settings.KEYWARD_BROKER_AGENT_BURST),
    )


def outstanding_cap(agent: Agent) -> int:
    return _first(
        agent.max_outstanding, agent.org.max_outstanding_per_agent, settings.KEYWARD_BROKER_MAX_OUTSTANDING_PER_AGENT
    )


def introspection_limit() -> ratelimit.Limit:
    return ratelimit.Limit(settings.KEYWARD_INTROSPECTION_RATE_PER_MINUTE, settings.KEYWARD_INTROSPECTION_BURST)


def _source_bucket(ip: str) -> str:
    return f"source:{address_bucket(ip) if ip else 'unknown'}"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def check_source(ip: str) -> None:
    """Refuse at once an address that has used up its budget of unproven requests."""
    verdict = ratelimit.peek({_source_bucket(ip): source_limit()})
    if not verdict.allowed:
        raise LimitExceeded(
            "Too many failed requests from this address; try again later.",
            limit="source",
            retry_after=verdict.retry_after,
        )


def spend_source(ip: str) -> None:
    """A request from `ip` proved nothing (400/401): it costs the address one unit of its budget."""
    ratelimit.take({_source_bucket(ip): source_limit()})


def take_end_user(org: Org, end_user: str) -> None:
    verdict = ratelimit.take({f"end_user:{org.pk}:{_digest(end_user)}": end_user_limit(org)})
    if not verdict.allowed:
        raise LimitExceeded(
            "Too many requests for this end user; slow down.", limit="end_user", retry_after=verdict.retry_after
        )


def take_agent(agent: Agent) -> None:
    verdict = ratelimit.take({f"agent:{agent.pk}": agent_limit(agent)})
    if not verdict.allowed:
        raise LimitExceeded(
            f"Too many requests from the agent {agent.name!r}; slow down.",
            limit="agent",
            retry_after=verdict.retry_after,
        )


def check_outstanding(agent: Agent) -> None:
    """Refuse a new credential while the agent holds its cap of live ones; Retry-After: the next expiry.

    Checked before minting, outside the issuance transaction, so requests in flight together may
    pass it together: the cap can be overshot by at most the number of concurrent requests.
    """
    cap = outstanding_cap(agent)
    live = IssuedCredential.objects.filter(agent=agent, revoked_at__isnull=True, expires_at__gt=timezone.now())
    if live.count() < cap:
        return
    soonest = live.order_by("expires_at").values_list("expires_at", flat=True).first()
    wait = (soonest - timezone.now()).total_seconds() if soonest else 1
    raise TooManyOutstanding(
        f"The agent {agent.name!r} holds {cap} live credentials, its limit; revoke some or wait.",
        limit="outstanding",
        retry_after=int(wait) + 1,
        detail={"cap": cap},
    )


def take_introspection(key: IntrospectionKey) -> None:
    verdict = ratelimit.take({f"introspection:{key.pk}": introspection_limit()})
    if not verdict.allowed:
        refusal = LimitExceeded(
            "Too many introspection requests with this key; slow down.",
            limit="introspection",
            retry_after=verdict.retry_after,
            org=key.org,
        )
        subject = {"detail": {"limit": refusal.limit, "introspection_prefix": key.prefix}}
        if floods.first_in_window({"org": key.org.pk, "event": SUMMARY_EVENT, "code": refusal.code, **subject}):
            record_committed_event(
                org=key.org,
                event_type=INTROSPECTION_REFUSED_EVENT,
                outcome=Outcome.DENIED,
                reason_code=refusal.code,
                actor=Actor.anonymous(key.prefix),
                detail={**subject["detail"], "aggregated": True, "window_seconds": floods.window_seconds()},
            )
        raise refusal


def subject_of(refusal: LimitExceeded, *, agent: str = "", end_user: str = "", ip: str = "") -> dict:
    """What a limit's key is, in audit terms: the agent, the end user or the source address."""
    if refusal.limit == "source":
        return {"ip": address_bucket(ip) if ip else ""}
    if refusal.limit == "end_user":
        return {"end_user": end_user}
    return {"agent": agent}


def first_in_window(org: Org | None, refusal: LimitExceeded, subject: dict) -> bool:
    """Count a limit's refusal; True for the first of its key and window (the one to audit in full)."""
    return floods.first_in_window(
        {
            "org": org.pk if org else None,
            "event": SUMMARY_EVENT,
            "code": refusal.code,
            **subject,
            "detail": {"limit": refusal.limit, **({"source": subject["ip"]} if subject.get("ip") else {})},
        }
    )
