"""Policy rules: validation, creation and deletion (audited), listing filters, and the simulator.

The simulator calls the same `engine.evaluate` as the broker, so "what would happen" is the
broker's own answer, not a re-implementation of it.
"""

import re
from datetime import datetime

from django.db import models, transaction

from keyward import scopes as scope_rules
from keyward.audit import events
from keyward.audit.models import Outcome
from keyward.audit.writer import AuditContext, record_event
from keyward.core.exceptions import InvalidRequest
from keyward.policies import conditions as policy_conditions
from keyward.policies.engine import Decision, evaluate
from keyward.policies.models import ANY, Effect, Policy
from keyward.tenancy.models import Org

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"
ENVIRONMENT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
# A rule's field may also be "any": empty (allowed by the serializer) or `*`.
RULE_NAME_PATTERN = r"^(?:\*|[a-z0-9][a-z0-9._-]{0,99})$"
RULE_ENVIRONMENT_PATTERN = r"^(?:\*|[a-z0-9][a-z0-9_-]{0,63})$"
NAME = re.compile(NAME_PATTERN)
ENVIRONMENT = re.compile(ENVIRONMENT_PATTERN)
DEFAULT_ENVIRONMENT = "prod"
_NAME_HELP = "lowercase letters, digits and . _ - (at most 100, starting with a letter or digit)"
_ENVIRONMENT_HELP = "lowercase letters, digits, _ and - (at most 64, starting with a letter or digit)"


def _any(value: str | None) -> str:
    """`*`, empty and absent all mean "any" and are stored as the empty string."""
    return ANY if value in (None, "", "*") else value


def _check_name(errors: dict, field: str, value: str, pattern: re.Pattern, help_text: str) -> None:
    if value and not pattern.fullmatch(value):
        errors[field] = [f"Use {help_text}, or leave it empty (or *) to match any."]


def validate_rule(
    *, agent: str, provider: str, scope: str, environment: str, effect: str, conditions
) -> dict[str, object]:
    """The rule's fields in stored form; InvalidRequest (400) lists every bad field."""
    fields = {
        "agent": _any(agent),
        "provider": _any(provider),
        "scope": _any(scope),
        "environment": _any(environment),
    }
    errors: dict[str, list[str]] = {}
    _check_name(errors, "agent", fields["agent"], NAME, _NAME_HELP)
    _check_name(errors, "provider", fields["provider"], NAME, _NAME_HELP)
    _check_name(errors, "environment", fields["environment"], ENVIRONMENT, _ENVIRONMENT_HELP)
    if fields["scope"] and (
        fields["scope"] != "".join(fields["scope"].split()) or not scope_rules.is_valid_pattern(fields["scope"])
    ):
        errors["scope"] = ["Use a scope (charges:read), a prefix wildcard (charges:*), or * / empty for any."]
    if effect not in Effect.values:
        errors["effect"] = [f"Use one of {', '.join(Effect.values)}."]
    try:
        fields["conditions"] = policy_conditions.normalise(conditions)
    except policy_conditions.InvalidCondition as exc:
        errors["conditions"] = [str(exc)]
    if errors:
        raise InvalidRequest("The policy is invalid; see fields.", fields=errors)
    fields["effect"] = effect
    return fields


def _record(policy: Policy, *, event_type: str, actor, context: AuditContext | None) -> None:
    record_event(
        org=policy.org,
        event_type=event_type,
        outcome=Outcome.SUCCESS,
        actor=actor,
        context=context,
        agent=policy.agent,
        provider=policy.provider,
        scope=policy.scope,
        environment=policy.environment,
        detail={"policy_id": policy.pk, "effect": policy.effect, "conditions": policy.conditions},
    )


def create_policy(
    *,
    org: Org,
    effect: str,
    agent: str | None = ANY,
    provider: str | None = ANY,
    scope: str | None = ANY,
    environment: str | None = ANY,
    conditions: dict | None = None,
    description: str = "",
    actor=None,
    audit_context: AuditContext | None = None,
) -> Policy:
    """Validate and store one rule; the rule and its `policy.created` audit row commit together."""
    fields = validate_rule(
        agent=agent, provider=provider, scope=scope, environment=environment, effect=effect, conditions=conditions
    )
    with transaction.atomic():
        policy = Policy.objects.create(org=org, description=description, **fields)
        _record(policy, event_type=events.POLICY_CREATED, actor=actor, context=audit_context)
    return policy


@transaction.atomic
def delete_policy(policy: Policy, *, actor=None, audit_context: AuditContext | None = None) -> None:
    _record(policy, event_type=events.POLICY_DELETED, actor=actor, context=audit_context)
    policy.delete()


def filter_policies(
    queryset: models.QuerySet, *, agent: str | None = None, provider: str | None = None, effect: str | None = None
) -> models.QuerySet:
    """Exact filters on the stored fields; `*` selects the rules that leave the field as "any"."""
    if agent:
        queryset = queryset.filter(agent=_any(agent))
    if provider:
        queryset = queryset.filter(provider=_any(provider))
    if effect:
        queryset = queryset.filter(effect=effect)
    return queryset


def simulate(
    org: Org,
    *,
    agent: str,
    provider: str,
    scope: str,
    environment: str | None = None,
    ip: str | None = None,
    at: datetime | None = None,
) -> Decision:
    """What the broker's policy step would answer for this request, and which rule decides.

    Only the policy step: whether the agent exists, is active and holds a grant is not checked.
    """
    environment = environment or DEFAULT_ENVIRONMENT
    errors: dict[str, list[str]] = {}
    _check_name(errors, "agent", agent, NAME, _NAME_HELP)
    _check_name(errors, "provider", provider, NAME, _NAME_HELP)
    _check_name(errors, "environment", environment, ENVIRONMENT, _ENVIRONMENT_HELP)
    for field, value in (("agent", agent), ("provider", provider)):
        if not value:
            errors[field] = ["This field is required."]
    try:
        requested = scope_rules.parse_scopes(scope)
    except ValueError as exc:
        errors["scope"] = [str(exc)]
    if errors:
        raise InvalidRequest("The simulation request is invalid; see fields.", fields=errors)
    return evaluate(org, agent=agent, provider=provider, scopes=requested, environment=environment, ip=ip, now=at)
