"""Agent rules: idempotent registration, revoke/restore, attestation settings, and the grant check.

The REST API and the console call these; the broker calls `grant_allows`.
"""

from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from keyward import scopes as scope_patterns
from keyward.agents.models import Agent, AgentStatus
from keyward.agents.signals import agent_revoked
from keyward.audit import events
from keyward.audit.models import Outcome
from keyward.audit.writer import AuditContext, record_event
from keyward.core.exceptions import InvalidRequest, NotFound
from keyward.net.ssrf import validate_outbound_url
from keyward.tenancy.models import Org

ANY_ENVIRONMENT = "*"
DEFAULT_ATTESTATION_ALGORITHMS = ("RS256", "ES256")
DEFAULT_MAX_TTL_SECONDS = 3600
REGISTRATION_FIELDS = (
    "description",
    "max_ttl_seconds",
    "grants",
    "attestation_required",
    "attestation_issuer",
    "attestation_jwks_uri",
    "attestation_audience",
    "attestation_algorithms",
    "attestation_subject_pattern",
    "attestation_required_claims",
    "rate_per_minute",
    "burst",
    "max_outstanding",
)
ATTESTATION_REQUIRES = ("attestation_issuer", "attestation_jwks_uri", "attestation_audience")


@dataclass(frozen=True)
class Registration:
    """The outcome of `register_agent`: the agent, and whether this call created it."""

    agent: Agent
    created: bool


def grant_allows(agent: Agent, *, provider: str, scopes: list[str], environment: str) -> bool:
    """True when ONE of the agent's grants names `provider`, covers every requested scope and lists
    `environment` (or `*`).

    Scopes split across two grants are refused on purpose: a grant is the unit an admin reviews and
    approves as a whole ("this provider, these scopes, in these environments"), so every credential
    is backed by exactly one grant. An admin who wants two scopes in one credential puts them in one
    grant. Only the grants are checked here; the agent's status is the broker's `agent_revoked` check.
    An empty request is refused (there is nothing a grant could be said to allow).
    """
    if not scopes:
        return False
    for grant in agent.grants or []:
        if not isinstance(grant, dict) or grant.get("provider") != provider:
            continue
        environments = grant.get("environments") or []
        if environment not in environments and ANY_ENVIRONMENT not in environments:
            continue
        if scope_patterns.is_subset(list(scopes), list(grant.get("scopes") or [])):
            return True
    return False


def get_agent(org: Org, id_or_name: str) -> Agent:
    """An agent of `org` by numeric id or by name; NotFound (404) otherwise, also for other orgs' agents."""
    lookup = {"pk": int(id_or_name)} if id_or_name.isdigit() else {"name": id_or_name}
    agent = Agent.objects.filter(org=org, **lookup).first()
    if agent is None:
        raise NotFound("No such agent.", code="not_found")
    return agent


def register_agent(
    *, org: Org, name: str, actor=None, audit_context: AuditContext | None = None, **fields
) -> Registration:
    """Create the agent called `name`, or update it to the given fields if it exists (idempotent).

    Fields left out keep their stored values (their defaults for a new agent). Two concurrent
    registrations of one new name both succeed: the loser of the insert race updates the winner's row.
    """
    unknown = set(fields) - set(REGISTRATION_FIELDS)
    if unknown:
        raise TypeError(f"unknown agent fields: {', '.join(sorted(unknown))}")
    context = audit_context or AuditContext.current()
    if fields.get("attestation_jwks_uri"):
        validate_outbound_url(fields["attestation_jwks_uri"], field="attestation_jwks_uri")
    if not Agent.objects.filter(org=org, name=name).exists():
        try:
            return Registration(_create(org, name, fields, actor, context), created=True)
        except IntegrityError:
            pass  # a concurrent registration created it first: update that row below
    return Registration(_update(org, name, fields, actor, context), created=False)


def _create(org: Org, name: str, fields: dict, actor, context: AuditContext) -> Agent:
    agent = Agent(
        org=org,
        name=name,
        max_ttl_seconds=min(DEFAULT_MAX_TTL_SECONDS, settings.KEYWARD_MAX_CREDENTIAL_TTL),
        attestation_algorithms=list(DEFAULT_ATTESTATION_ALGORITHMS),
    )
    for field, value in fields.items():
        setattr(agent, field, value)
    _check_attestation(agent)
    with transaction.atomic():
        agent.save(force_insert=True)
        _record(agent, events.AGENT_REGISTERED, actor, context)
    return agent


@transaction.atomic
def _update(org: Org, name: str, fields: dict, actor, context: AuditContext) -> Agent:
    agent = _locked(Agent.objects.filter(org=org, name=name))
    changed = sorted(field for field, value in fields.items() if getattr(agent, field) != value)
    for field in changed:
        setattr(agent, field, fields[field])
    _check_attestation(agent)
    if changed:
        agent.save(update_fields=[*changed, "updated_at"])
        _record(agent, events.AGENT_UPDATED, actor, context, changed=changed)
    return agent


def _locked(agents) -> Agent:
    return agents.select_related("org").select_for_update(of=("self",)).get()


def _check_attestation(agent: Agent) -> None:
    """An agent that requires attestation names the issuer, the JWKS URI and the audience to check against."""
    if not agent.attestation_required:
        return
    missing = {field: ["Required when attestation_required is true."] for field in ATTESTATION_REQUIRES}
    missing = {field: message for field, message in missing.items() if not getattr(agent, field)}
    if missing:
        raise InvalidRequest(
            "An agent that requires attestation needs an issuer, a JWKS URI and an audience.", fields=missing
        )


@transaction.atomic
def revoke_agent(agent: Agent, *, actor=None, audit_context: AuditContext | None = None) -> Agent:
    """Stop the agent from getting credentials and revoke every live credential it holds.

    The holdings (and everything delegated from them) are revoked by the broker's receiver of
    `agent_revoked`, in this transaction and after the audit row took the org's chain lock: an
    issuance racing this one either committed before (and is revoked here) or re-checks the agent
    under the same lock and is refused. Idempotent: revoking a revoked agent records nothing.
    """
    agent = _locked(Agent.objects.filter(pk=agent.pk))
    if agent.status != AgentStatus.REVOKED:
        agent.status, agent.revoked_at = AgentStatus.REVOKED, timezone.now()
        agent.save(update_fields=["status", "revoked_at", "updated_at"])
        _record(agent, events.AGENT_REVOKED, actor, audit_context)
        agent_revoked.send(sender=Agent, agent=agent, actor=actor, audit_context=audit_context)
    return agent


@transaction.atomic
def restore_agent(agent: Agent, *, actor=None, audit_context: AuditContext | None = None) -> Agent:
    """Let a revoked agent get credentials again; what was revoked with it stays revoked.

    Idempotent: restoring an active agent records nothing.
    """
    agent = _locked(Agent.objects.filter(pk=agent.pk))
    if agent.status != AgentStatus.ACTIVE:
        agent.status, agent.revoked_at = AgentStatus.ACTIVE, None
        agent.save(update_fields=["status", "revoked_at", "updated_at"])
        _record(agent, events.AGENT_RESTORED, actor, audit_context)
    return agent


def _record(
    agent: Agent, event_type: str, actor, context: AuditContext | None, changed: list[str] | None = None
) -> None:
    detail: dict = {"agent_id": agent.pk, "status": agent.status}
    if changed is not None:
        detail["changed"] = changed
    record_event(
        org=agent.org,
        event_type=event_type,
        outcome=Outcome.SUCCESS,
        actor=actor,
        context=context,
        agent=agent.name,
        detail=detail,
    )
