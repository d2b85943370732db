"""Steps 2-4: who is asking. The human (end-user token) or the delegation, the agent, its attestation."""

import fnmatch
from dataclasses import dataclass, field

from django.conf import settings
from django.utils import timezone

from broker.models import IssuedCredential
from broker.refusals import AgentRevoked, AttestationRequired, InvalidDelegation, InvalidUserToken, UnknownAgent
from keyward.agents.models import Agent, AgentStatus
from keyward.crypto.signing import SigningKeySource
from keyward.idp.verification import verify_user_token
from keyward.jose.errors import TokenInvalid
from keyward.jose.jwks import jwks_key_source
from keyward.jose.types import TokenType
from keyward.jose.verify import peek_claims, verify_jwt
from keyward.tenancy.models import Org

DELEGATION_REQUIRED_CLAIMS = ("sub", "jti", "cred", "org", "chain", "depth")


def delegation_audience() -> str:
    """Delegation tokens are for keyward's broker only; no resource server accepts them."""
    return f"{settings.KEYWARD_ISSUER}/v1/credentials"


@dataclass(frozen=True)
class Caller:
    """The human a request acts for, in which org, and the delegation it extends (if any)."""

    org: Org
    end_user: str
    parent: IssuedCredential | None = None
    chain: list[str] = field(default_factory=list)
    end_user_email: str = ""  # the user token's email claim, kept along the delegation chain


def authenticate_user(token: str) -> Caller:
    try:
        user = verify_user_token(token)
    except TokenInvalid as exc:
        raise InvalidUserToken(
            f"The end-user token was refused: {exc}",
            detail={"verification": str(exc.reason)},
            org=getattr(exc, "org", None),
        ) from None
    return Caller(org=user.org, end_user=user.subject, end_user_email=user.email)


def authenticate_delegation(token: str) -> Caller:
    """A keyward delegation token whose credential record exists, is live and not revoked."""
    try:
        claims = verify_jwt(
            token,
            keys=SigningKeySource(),
            algorithms=["ES256"],
            issuer=settings.KEYWARD_ISSUER,
            audience=delegation_audience(),
            token_type=TokenType.DELEGATION,
            required_claims=DELEGATION_REQUIRED_CLAIMS,
        )
    except TokenInvalid as exc:
        raise InvalidDelegation(
            f"The delegation token was refused: {exc}",
            detail={"verification": str(exc.reason)},
            org=_org_of_altered_token(token),
        ) from None
    parent = _delegation_record(claims.get("cred"), claims.get("jti"))
    if parent is None:
        raise InvalidDelegation("The delegation token names no credential keyward issued.")
    if parent.org_id != claims["org"]:
        raise InvalidDelegation("The delegation token names no credential keyward issued.", org=parent.org)
    # keyward signed this token for `parent.org`: a refusal from here on is that org's to see.
    refused = {"detail": {"parent_jti": parent.jti}, "org": parent.org}
    if parent.revoked_at is not None:
        raise InvalidDelegation("The parent credential was revoked.", **refused)
    if parent.expires_at <= timezone.now():
        raise InvalidDelegation("The parent credential has expired.", **refused)
    if revoked_agents_in(parent.org, parent.chain):
        raise InvalidDelegation("An agent in this delegation chain was revoked.", **refused)
    return Caller(
        org=parent.org,
        end_user=parent.end_user,
        parent=parent,
        chain=list(parent.chain),
        end_user_email=parent.end_user_email,
    )


def _delegation_record(credential_jti, delegation_jti) -> IssuedCredential | None:
    if not (isinstance(credential_jti, str) and isinstance(delegation_jti, str)):
        return None
    return (
        IssuedCredential.objects.select_related("org", "provider", "agent")
        .filter(jti=credential_jti, delegation_jti=delegation_jti)
        .first()
    )


def _org_of_altered_token(token: str) -> Org | None:
    """The org of the record a refused delegation token names by both its ids (which only the
    token's holders know): an altered copy of a real token is an attack on that org, so its chain
    shows it. Anything else names no org (the platform chain)."""
    try:
        claims = peek_claims(token)
    except TokenInvalid:
        return None
    parent = _delegation_record(claims.get("cred"), claims.get("jti"))
    return parent.org if parent is not None else None


def revoked_agents_in(org: Org, chain: list[str]) -> bool:
    """True when an agent named in the chain is revoked (its holdings are revoked with it, but a
    delegation token must not outlive its agent even for the moment before that commits)."""
    return Agent.objects.filter(org=org, name__in=chain, status=AgentStatus.REVOKED).exists()


def resolve_agent(org: Org, name: str) -> Agent:
    """The org's agent by name. Another org's agent of the same name does not exist here."""
    agent = Agent.objects.filter(org=org, name=name).first()
    if agent is None:
        raise UnknownAgent(f"No agent named {name!r} is registered in this org.")
    agent.org = org  # the caller's org object: what the steps after read of it costs no query
    if not agent.is_active:
        raise AgentRevoked(f"The agent {name!r} is revoked.")
    return agent


def attest(agent: Agent, assertion: str | None) -> None:
    """An agent that requires attestation proves it with an OIDC JWT from its configured issuer."""
    if not agent.attestation_required:
        return
    if not assertion:
        raise AttestationRequired("This agent must send X-Keyward-Agent-Assertion.", detail={"attestation": "missing"})
    try:
        claims = verify_jwt(
            assertion,
            keys=jwks_key_source(agent.attestation_jwks_uri),
            algorithms=agent.attestation_algorithms,
            issuer=agent.attestation_issuer,
            audience=agent.attestation_audience,
            required_claims=("sub",),
        )
    except TokenInvalid as exc:
        raise AttestationRequired(
            f"The agent assertion was refused: {exc}", detail={"attestation": str(exc.reason)}
        ) from None
    subject = claims["sub"]
    pattern = agent.attestation_subject_pattern
    if pattern and not (isinstance(subject, str) and fnmatch.fnmatchcase(subject, pattern)):
        raise AttestationRequired("The agent assertion's subject is not allowed.", detail={"attestation": "subject"})
    for name, expected in agent.attestation_required_claims.items():
        if claims.get(name) != expected:
            raise AttestationRequired(
                f"The agent assertion lacks the required claim {name!r}.", detail={"attestation": f"claim:{name}"}
            )
