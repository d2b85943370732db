"""The policy engine: one answer to "may this agent get these scopes?", shared by the broker and
the admin simulator so that what an admin simulates is exactly what the broker does.

Deny by default. A rule matches when each of its non-empty fields equals the request's (its scope
may also be a prefix wildcard that matches) and its conditions hold. The most specific matching
rule wins: more non-empty fields first, then the more precise scope (exact, then longer prefixes).
Among equally specific rules the most restrictive effect wins, then the lowest id. Several scopes
are decided one by one and the most restrictive outcome decides the request.

The broker calls this on every credential request, so it never loads an org's rules into Python:
one indexed query per scope fetches only the rules that can match, already in precedence order
(the `field_count`, `scope_precision` and `effect_rank` columns `Policy.save` derives), and reads
them in small batches until the first one whose conditions hold.
"""

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from django.db.models import Q, QuerySet
from django.utils import timezone

from keyward import scopes as scope_rules
from keyward.policies import conditions
from keyward.policies.models import ANY, EFFECT_RANK, Effect, Policy
from keyward.tenancy.models import Org

logger = logging.getLogger(__name__)

# The first batch covers the usual case (the top candidate has no conditions) in one short query;
# later batches only run when conditions keep failing.
FIRST_BATCH = 8
NEXT_BATCH = 64
PRECEDENCE = ("-field_count", "-scope_precision", "-effect_rank", "id")
_VERBS = {Effect.ALLOW: "allows", Effect.REQUIRE_APPROVAL: "requires approval for", Effect.DENY: "denies"}


@dataclass(frozen=True)
class Decision:
    """The outcome of one evaluation.

    `policy` is the deciding rule (None when nothing matched: deny by default); `scope` is the
    requested scope whose outcome decided; `reason` explains it in a sentence for admins and logs.
    """

    effect: str
    policy: Policy | None
    policy_id: int | None
    scope: str
    reason: str

    @property
    def allowed(self) -> bool:
        return self.effect == Effect.ALLOW


def evaluate(
    org: Org | int,
    *,
    agent: str,
    provider: str,
    scopes: Sequence[str],
    environment: str,
    ip: str | None = None,
    now: datetime | None = None,
) -> Decision:
    """Decide a request for `scopes` (each a concrete scope, not a pattern) by `agent` on `provider`.

    `ip` is the caller's address for `source_cidrs` conditions (None fails them); `now` (an aware
    datetime, default the current time) is the moment `time_window` conditions are checked at.
    Raises ValueError for a malformed scope list. Stops at the first denied scope.
    """
    requested = _checked_scopes(scopes)
    if now is None:
        now = timezone.now()
    elif timezone.is_naive(now):
        raise ValueError("now must be an aware datetime")
    deciding = _decide_scope(org, agent, provider, requested[0], environment, ip, now)  # never empty
    for scope in requested[1:]:
        if deciding.effect == Effect.DENY:
            break
        decision = _decide_scope(org, agent, provider, scope, environment, ip, now)
        if EFFECT_RANK[decision.effect] > EFFECT_RANK[deciding.effect]:
            deciding = decision
    if len(requested) > 1:
        reason = f"{deciding.reason} (the most restrictive outcome of {len(requested)} requested scopes)"
        deciding = replace(deciding, reason=reason)
    return deciding


def candidates(org: Org | int, *, agent: str, provider: str, scope: str, environment: str) -> QuerySet:
    """Every rule that can match one scope, in precedence order; conditions are not checked here.

    A rule's `*` scope is stored empty (`Policy.save`), so `wildcard_patterns`' `*` becomes `ANY`.
    """
    patterns = [pattern for pattern in scope_rules.wildcard_patterns(scope) if pattern != "*"] + [ANY]
    return Policy.objects.filter(
        org=org,
        agent__in=_value_or_any(agent),
        provider__in=_value_or_any(provider),
        environment__in=_value_or_any(environment),
        scope__in=patterns,
    ).order_by(*PRECEDENCE)


def _value_or_any(value: str) -> list[str]:
    return [value, ANY] if value else [ANY]


def _checked_scopes(scopes: Sequence[str]) -> list[str]:
    """The distinct requested scopes; patterns (`charges:*`) are refused, a request names scopes."""
    if isinstance(scopes, str):
        raise ValueError("scopes must be a list of scopes, not one string")
    requested = list(dict.fromkeys(scopes))
    if not requested:
        raise ValueError("at least one scope is needed")
    if len(requested) > scope_rules.MAX_SCOPES_PER_REQUEST:
        raise ValueError(f"at most {scope_rules.MAX_SCOPES_PER_REQUEST} scopes per request")
    for scope in requested:
        if not isinstance(scope, str) or not scope_rules.SCOPE.fullmatch(scope):
            raise ValueError(f"{str(scope)[:50]!r} is not a valid scope")
    return requested


def _decide_scope(
    org: Org | int, agent: str, provider: str, scope: str, environment: str, ip: str | None, now: datetime
) -> Decision:
    rules = candidates(org, agent=agent, provider=provider, scope=scope, environment=environment)
    for policy in _in_batches(rules):
        if _conditions_hold(policy, ip, now):
            verb = _VERBS[Effect(policy.effect)]
            held = " (its conditions hold)" if policy.conditions else ""
            return Decision(
                policy.effect, policy, policy.pk, scope, f"rule #{policy.pk} [{policy}] {verb} {scope}{held}"
            )
    reason = f"no rule matches {scope} for agent {agent!r} on provider {provider!r} in {environment!r}: deny by default"
    return Decision(Effect.DENY.value, None, None, scope, reason)


def _in_batches(rules: QuerySet) -> Iterator[Policy]:
    """The rules lazily, a batch per query; later batches continue after the last row's sort key,
    so a rule deleted meanwhile cannot shift the window and skip a rule (as OFFSET would)."""
    batch = list(rules[:FIRST_BATCH])
    size = FIRST_BATCH
    while batch:
        yield from batch
        if len(batch) < size:
            return
        size = NEXT_BATCH
        batch = list(rules.filter(_after(batch[-1]))[:size])


def _after(last: Policy) -> Q:
    """Rules that sort after `last` in PRECEDENCE order (descending precedence, ascending id)."""
    same_fields = Q(field_count=last.field_count)
    same_scope = same_fields & Q(scope_precision=last.scope_precision)
    same_rank = same_scope & Q(effect_rank=last.effect_rank)
    return (
        Q(field_count__lt=last.field_count)
        | (same_fields & Q(scope_precision__lt=last.scope_precision))
        | (same_scope & Q(effect_rank__lt=last.effect_rank))
        | (same_rank & Q(id__gt=last.pk))
    )


def _conditions_hold(policy: Policy, ip: str | None, now: datetime) -> bool:
    """A stored condition keyward cannot evaluate resolves restrictively: an allow rule then does
    not match, while a deny or approval rule does, so a broken row never widens access."""
    if not policy.conditions:
        return True
    try:
        return conditions.hold(policy.conditions, ip=ip, now=now)
    except conditions.UnevaluableCondition as exc:
        logger.warning("policy %s has conditions keyward cannot evaluate (%s); resolving restrictively", policy.pk, exc)
        return policy.effect != Effect.ALLOW
