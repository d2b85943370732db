"""POST /v1/credentials: parse → authenticate → agent → attest → grant → policy → (approval) → mint →
record + audit → respond. Each step is a small function; every outcome is one audit row.

The issued-credential record and its audit row commit in one transaction: if the audit row cannot
be written, the credential never leaves the server (503 `audit_unavailable`). Refusals are audited
in their own committed transaction just before the error is returned.
"""

import secrets
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from broker import idempotency, limits, registry
from broker.callers import (
    Caller,
    attest,
    authenticate_delegation,
    authenticate_user,
    delegation_audience,
    resolve_agent,
    revoked_agents_in,
)
from broker.minters import Minted, MintError, MintRequest, calls_provider, minter_for
from broker.models import IdempotencyRecord, IssuedCredential
from broker.parsing import CredentialRequest, parse_credential_request
from broker.refusals import (
    AgentRevoked,
    ApprovalDenied,
    DelegationTooDeep,
    InvalidDelegation,
    LimitExceeded,
    NativeMintFailed,
    PolicyDenied,
    Refusal,
    ScopeNotAllowed,
    UnknownProvider,
)
from keyward import scopes as scope_rules
from keyward.agents.models import Agent, AgentStatus
from keyward.agents.services import grant_allows
from keyward.approvals import services as approvals
from keyward.approvals.models import Approval
from keyward.audit import events, floods
from keyward.audit.models import Outcome
from keyward.audit.writer import Actor, AuditContext, record_committed_event, record_event
from keyward.audit.writer import probe as audit_probe
from keyward.crypto.signing import sign_token
from keyward.jose.types import TokenType
from keyward.policies.engine import Decision, evaluate
from keyward.policies.models import Effect
from keyward.providers.models import Provider
from keyward.tenancy.models import Org


@dataclass
class Facts:
    """What the audit row will say, filled in as each step learns more about the request."""

    context: AuditContext
    org: Org | None = None
    agent: Agent | None = None
    agent_name: str = ""
    end_user: str = ""
    chain: list[str] = field(default_factory=list)
    provider: str = ""
    scope: str = ""
    environment: str = ""
    detail: dict = field(default_factory=dict)

    def record(self, *, event_type: str, outcome: str, reason_code: str = "", credential_jti: str = "", durable=False):
        actor = Actor.agent(self.agent.pk, self.agent.name) if self.agent else Actor.anonymous(self.agent_name)
        write = record_committed_event if durable else record_event
        return write(
            org=self.org,
            event_type=event_type,
            outcome=outcome,
            reason_code=reason_code,
            actor=actor,
            context=self.context,
            end_user=self.end_user,
            agent=self.agent_name,
            delegation_chain=self.chain,
            provider=self.provider,
            scope=self.scope,
            environment=self.environment,
            credential_jti=credential_jti,
            detail=self.detail,
        )


@dataclass(frozen=True)
class BrokerAnswer:
    status: int
    body: dict


def handle(http_request: HttpRequest) -> BrokerAnswer:
    """Run the pipeline; a refusal is audited (committed on its own) and then raised to the caller."""
    facts = Facts(context=AuditContext.from_request(http_request))
    try:
        return _run(http_request, facts)
    except Refusal as refusal:
        facts.detail.update(refusal.detail)
        facts.org = facts.org or refusal.org
        if refusal.code in limits.UNPROVEN_CODES:
            limits.spend_source(facts.context.ip)
        if isinstance(refusal, LimitExceeded):
            subject = limits.subject_of(refusal, agent=facts.agent_name, end_user=facts.end_user, ip=facts.context.ip)
            if not limits.first_in_window(facts.org, refusal, subject):
                raise  # counted; the window's summary row will say how many
            facts.detail.update(aggregated=True, window_seconds=floods.window_seconds())
        facts.record(
            event_type=events.CREDENTIAL_DENIED, outcome=Outcome.DENIED, reason_code=refusal.code, durable=True
        )
        raise


@dataclass
class Issuance:
    """One request on its way through the pipeline; each step fills in what it decided."""

    request: CredentialRequest
    caller: Caller
    agent: Agent
    facts: Facts
    claim: IdempotencyRecord | None = None
    provider: Provider | None = None
    decision: Decision | None = None
    depth: int = 1
    ttl_seconds: int = 0
    approval: Approval | None = None


def _run(http_request: HttpRequest, facts: Facts) -> BrokerAnswer:
    limits.check_source(facts.context.ip)
    request = parse_credential_request(http_request)
    facts.agent_name, facts.environment = request.agent_name, request.environment
    facts.provider, facts.scope = request.provider_name, request.scope

    if request.user_token:
        caller = authenticate_user(request.user_token)
    else:
        caller = authenticate_delegation(request.delegation_token)
    facts.org, facts.end_user, facts.chain = caller.org, caller.end_user, caller.chain
    limits.take_end_user(caller.org, caller.end_user)
    agent = resolve_agent(caller.org, request.agent_name)
    facts.agent, facts.chain = agent, [*caller.chain, agent.name]
    limits.take_agent(agent)
    attest(agent, request.assertion)

    claim = _claim_idempotency_key(request, caller, agent)
    if isinstance(claim, idempotency.Replay):
        facts.detail["replay"] = True
        jti = claim.body.get("credential_id", "")
        facts.record(event_type=events.CREDENTIAL_ISSUED, outcome=Outcome.SUCCESS, credential_jti=jti)
        return BrokerAnswer(claim.status_code, claim.body)
    issuance = Issuance(request=request, caller=caller, agent=agent, facts=facts, claim=claim)
    try:
        answer = _decide_and_issue(issuance)
    except Exception:
        _release(issuance)
        raise
    if answer.status != 200:
        _release(issuance)
    return answer


def _release(issuance: Issuance) -> None:
    """Nothing was issued: free the idempotency key and give a consumed approval back."""
    if issuance.claim is not None:
        idempotency.release(issuance.claim)
    if issuance.approval is not None:
        approvals.release(issuance.approval)


def _claim_idempotency_key(request: CredentialRequest, caller: Caller, agent: Agent):
    if request.idempotency_key is None:
        return None
    digest = idempotency.request_hash(
        end_user=caller.end_user,
        parent=caller.parent.jti if caller.parent else "",
        provider=request.provider_name,
        scopes=request.scopes,
        environment=request.environment,
        ttl=request.ttl_seconds,
    )
    return idempotency.claim(caller.org, agent, request.idempotency_key, digest)


def _decide_and_issue(issuance: Issuance) -> BrokerAnswer:
    request, caller, agent, facts = issuance.request, issuance.caller, issuance.agent, issuance.facts
    issuance.provider = resolve_provider(caller.org, request.provider_name)
    check_scopes(agent, issuance.provider, request)
    issuance.depth = check_delegation(caller, agent, issuance.provider, request)
    issuance.decision = evaluate(
        caller.org,
        agent=agent.name,
        provider=issuance.provider.name,
        scopes=request.scopes,
        environment=request.environment,
        ip=request.ip or None,
    )
    facts.detail["policy_id"] = issuance.decision.policy_id
    if issuance.decision.effect == Effect.DENY:
        raise PolicyDenied(issuance.decision.reason)
    issuance.ttl_seconds = clamp_ttl(request.ttl_seconds, caller, agent, issuance.provider)
    facts.detail["ttl_seconds"] = issuance.ttl_seconds
    if issuance.decision.effect == Effect.REQUIRE_APPROVAL:
        issuance.approval = _approval_gate(issuance)
        if issuance.approval is None:
            return BrokerAnswer(202, {"status": "pending_approval", "approval_id": facts.detail["approval_id"]})
        # A human approved the lifetime they were shown; a retry asking for longer gets no more.
        issuance.ttl_seconds = min(issuance.ttl_seconds, issuance.approval.ttl_seconds)
        facts.detail["ttl_seconds"] = issuance.ttl_seconds
    limits.check_outstanding(agent)
    return _mint_and_record(issuance)


def resolve_provider(org: Org, name: str) -> Provider:
    provider = Provider.objects.filter(org=org, name=name).first()
    if provider is None:
        raise UnknownProvider(f"No provider named {name!r} exists in this org.")
    return provider


def check_scopes(agent: Agent, provider: Provider, request: CredentialRequest) -> None:
    """The provider offers every scope, and one of the agent's grants covers them in this environment."""
    if provider.scopes and not scope_rules.is_subset(request.scopes, provider.scopes):
        raise ScopeNotAllowed(f"The provider {provider.name!r} does not offer this scope.")
    if not grant_allows(agent, provider=provider.name, scopes=request.scopes, environment=request.environment):
        raise ScopeNotAllowed(
            f"The agent {agent.name!r} has no grant for this scope of {provider.name!r} in {request.environment!r}."
        )


def check_delegation(caller: Caller, agent: Agent, provider: Provider, request: CredentialRequest) -> int:
    """A delegated request may only narrow its parent. Returns the new credential's depth."""
    parent = caller.parent
    if parent is None:
        return 1
    if parent.provider_id != provider.pk or parent.environment != request.environment:
        raise ScopeNotAllowed("A delegated credential keeps its parent's provider and environment.")
    if not set(request.scopes) <= set(parent.scope.split()):
        raise ScopeNotAllowed("A delegated credential may only narrow its parent's scope.")
    if agent.name in parent.chain:
        raise InvalidDelegation(f"The agent {agent.name!r} is already in this delegation chain.")
    depth = parent.depth + 1
    if depth > caller.org.max_delegation_depth:
        raise DelegationTooDeep(
            f"The chain would be {depth} agents deep; this org allows {caller.org.max_delegation_depth}.",
            detail={"depth": depth},
        )
    return depth


def clamp_ttl(requested: int, caller: Caller, agent: Agent, provider: Provider) -> int:
    """The smallest of the requested, agent, provider, org, platform and parent limits."""
    limits = [
        requested,
        agent.max_ttl_seconds,
        provider.max_ttl_seconds,
        caller.org.max_ttl_seconds,
        settings.KEYWARD_MAX_CREDENTIAL_TTL,
    ]
    if caller.parent is not None:
        limits.append(int((caller.parent.expires_at - timezone.now()).total_seconds()))
    ttl = min(limits)
    if ttl < 1:
        raise InvalidDelegation("The parent credential has expired.")
    return ttl


def _recheck_under_chain_lock(issuance: Issuance) -> None:
    """Refuse (and roll back) a credential whose agent, chain or parent was revoked while it was minted.

    Runs in the issuance transaction after its audit row took the org's chain lock, which revoking
    an agent or a credential takes before it looks for what to revoke: so either that revocation
    committed first and is seen here, or it runs after this commit and finds this credential.
    """
    caller = issuance.caller
    if revoked_agents_in(caller.org, issuance.facts.chain):
        if not Agent.objects.filter(pk=issuance.agent.pk, status=AgentStatus.ACTIVE).exists():
            raise AgentRevoked(f"The agent {issuance.agent.name!r} is revoked.")
        raise InvalidDelegation("An agent in this delegation chain was revoked.")
    if (
        caller.parent is not None
        and IssuedCredential.objects.filter(pk=caller.parent.pk, revoked_at__isnull=False).exists()
    ):
        raise InvalidDelegation("The parent credential was revoked.", detail={"parent_jti": caller.parent.jti})


def _approval_gate(issuance: Issuance) -> Approval | None:
    """Consume a granted approval (returned), or answer 202 (None) / 403 for a pending or denied one."""
    request, caller, facts = issuance.request, issuance.caller, issuance.facts
    gate = approvals.gate(
        approvals.ApprovalRequest(
            org=caller.org,
            agent=issuance.agent,
            end_user=caller.end_user,
            end_user_email=caller.end_user_email,
            provider=issuance.provider.name,
            scopes=request.scopes,
            environment=request.environment,
            ttl_seconds=issuance.ttl_seconds,
            chain=facts.chain,
            parent_jti=caller.parent.jti if caller.parent else "",
            policy_id=issuance.decision.policy_id,
        )
    )
    facts.detail["approval_id"] = gate.approval.pk
    if gate.state == "denied":
        raise ApprovalDenied("A human denied this request.")
    if gate.state == "pending":
        facts.record(event_type=events.CREDENTIAL_PENDING, outcome=Outcome.PENDING, reason_code="approval_required")
        return None
    return gate.approval


def _mint(issuance: Issuance) -> tuple[MintRequest, Minted]:
    """Mint, after the last check that can fail before it: for a provider that is called (and so
    makes a real credential), the audit row that will record it is proven writable first."""
    request, caller, provider = issuance.request, issuance.caller, issuance.provider
    if calls_provider(provider):
        audit_probe(caller.org)
    issued_at = timezone.now().replace(microsecond=0)
    mint_request = MintRequest(
        org=caller.org,
        agent=issuance.agent,
        provider=provider,
        end_user=caller.end_user,
        scopes=request.scopes,
        environment=request.environment,
        jti=secrets.token_hex(16),
        issued_at=issued_at,
        expires_at=issued_at + timedelta(seconds=issuance.ttl_seconds),
        chain=issuance.facts.chain,
        user_token=request.user_token,
        not_after=caller.parent.expires_at if caller.parent else None,
    )
    try:
        minted = minter_for(provider).mint(mint_request)
    except MintError as exc:
        raise NativeMintFailed(
            f"The provider {provider.name!r} could not mint a credential: {exc}",
            detail={"upstream_status": exc.upstream_status, "upstream_error": exc.upstream_error},
        ) from None
    return mint_request, minted


def _delegation_token(issuance: Issuance, mint_request: MintRequest, delegation_jti: str, expires_at) -> str:
    """What a sub-agent presents to extend the chain; it is bound to this credential's record."""
    caller, request = issuance.caller, issuance.request
    claims = {
        "iss": settings.KEYWARD_ISSUER,
        "aud": delegation_audience(),
        "sub": caller.end_user,
        "org": caller.org.pk,
        "jti": delegation_jti,
        "cred": mint_request.jti,
        "provider": issuance.provider.name,
        "scope": request.scope,
        "env": request.environment,
        "depth": issuance.depth,
        "chain": issuance.facts.chain,
        "iat": int(mint_request.issued_at.timestamp()),
        "exp": int(expires_at.timestamp()),
    }
    return sign_token(claims, TokenType.DELEGATION)


def _mint_and_record(issuance: Issuance) -> BrokerAnswer:
    mint_request, minted = _mint(issuance)
    try:
        body = _answer(issuance, mint_request, minted)
    except BaseException:
        _discard_unrecorded(issuance, minted)
        raise
    return BrokerAnswer(200, body)


def _answer(issuance: Issuance, mint_request: MintRequest, minted: Minted) -> dict:
    """The 200 body, once the record and its audit row committed."""
    request, facts = issuance.request, issuance.facts
    delegation_jti = secrets.token_hex(16)
    # Capped at the TTL, unless the provider could not go that short (AWS STS): then its real expiry, said aloud.
    expires_at = minted.expires_at if minted.ttl_clamped_up_to else min(minted.expires_at, mint_request.expires_at)
    body = {
        "credential": minted.credential,
        "token_type": minted.token_type,
        "provider": issuance.provider.name,
        "scope": request.scope,
        "expires_at": expires_at.isoformat().replace("+00:00", "Z"),
        "delegation": {
            "token": _delegation_token(issuance, mint_request, delegation_jti, expires_at),
            "depth": issuance.depth,
            "chain": facts.chain,
        },
        "credential_id": mint_request.jti,
    }
    if minted.ttl_clamped_up_to:
        body["ttl_clamped_up_to"] = minted.ttl_clamped_up_to
        facts.detail["ttl_clamped_up_to"] = minted.ttl_clamped_up_to
    facts.detail["credential_type"] = minted.token_type
    _record_issuance(issuance, mint_request, minted, delegation_jti, expires_at, body)
    return body


def _discard_unrecorded(issuance: Issuance, minted: Minted) -> None:
    """A credential minted upstream but never recorded (nor handed out) is revoked there, where the
    provider can; otherwise it lives until its short expiry, known to nobody but its provider."""
    discard = getattr(minter_for(issuance.provider), "discard", None)
    if discard is None or minted.revocation_handle is None:
        return
    discard(issuance.provider, minted.revocation_handle)
    issuance.facts.detail["discarded_upstream"] = True


def _record_issuance(
    issuance: Issuance, mint_request: MintRequest, minted: Minted, delegation_jti: str, expires_at, body: dict
) -> None:
    """The record and its audit row, in one transaction (with the rest an issuance commits)."""
    request, caller, facts, approval = issuance.request, issuance.caller, issuance.facts, issuance.approval
    with transaction.atomic():
        IssuedCredential.objects.create(
            jti=mint_request.jti,
            delegation_jti=delegation_jti,
            org=caller.org,
            agent=issuance.agent,
            provider=issuance.provider,
            end_user=caller.end_user,
            end_user_email=caller.end_user_email,
            scope=request.scope,
            environment=request.environment,
            token_type=minted.token_type,
            issued_at=mint_request.issued_at,
            expires_at=expires_at,
            parent=caller.parent,
            depth=issuance.depth,
            chain=facts.chain,
            approval_id=approval.pk if approval else "",
            policy_id=issuance.decision.policy_id,
            native=minted.native,
            revocable_upstream=minted.revocable_upstream,
        )
        if minted.revocation_handle is not None:
            registry.keep_revocation_handle(
                org=caller.org, jti=mint_request.jti, handle=minted.revocation_handle, expires_at=expires_at
            )
        if approval is not None:
            Approval.objects.filter(pk=approval.pk).update(credential_jti=mint_request.jti)
        facts.record(event_type=events.CREDENTIAL_ISSUED, outcome=Outcome.SUCCESS, credential_jti=mint_request.jti)
        _recheck_under_chain_lock(issuance)
        if issuance.claim is not None:
            idempotency.complete(issuance.claim, body, expires_at)
