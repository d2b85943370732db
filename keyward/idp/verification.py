"""Verifying an end-user identity token: its `iss` + `aud` select the org's IdP connector."""

from dataclasses import dataclass

import josepy
from django.conf import settings

from keyward.idp.issuers import is_shared_issuer
from keyward.idp.models import IdpConnector, IdpKind
from keyward.jose.errors import TokenFailure, TokenInvalid
from keyward.jose.jwks import jwks_key_source
from keyward.jose.keys import KeySource, StaticKeySource
from keyward.jose.verify import peek_claims, verify_jwt
from keyward.tenancy.models import Org

MAX_AUDIENCES = 10
MAX_EMAIL_LENGTH = 254
MAX_CLAIM_TEXT = 2000  # an issuer or audience longer than any a connector can hold names no connector


def storable_text(value, limit: int = MAX_CLAIM_TEXT) -> bool:
    """A non-empty string of sane length without a NUL, which PostgreSQL's text type refuses (a 500)."""
    return isinstance(value, str) and 0 < len(value) <= limit and "\x00" not in value


@dataclass(frozen=True)
class VerifiedUser:
    org: Org
    connector: IdpConnector
    subject: str
    claims: dict

    @property
    def email(self) -> str:
        """The token's `email` claim, or "". Many IdPs (Okta, Entra ID, Auth0, Google) use opaque
        subjects, so this is how keyward recognises the person behind a request, e.g. an approver
        deciding their own. Only used to refuse more, never to grant anything."""
        email = self.claims.get("email")
        if storable_text(email, MAX_EMAIL_LENGTH) and len(email) >= 3 and "@" in email:
            return email.strip()
        return ""


def key_source_for(connector: IdpConnector) -> KeySource:
    if connector.kind == IdpKind.DEV:
        key = connector.dev_key
        return StaticKeySource({key.kid: josepy.JWK.from_json(key.public_jwk)})
    return jwks_key_source(connector.jwks_uri)


def _candidate_connector(claims: dict) -> IdpConnector:
    """The one connector the unverified `iss`/`aud` point at. Verification with its keys follows.

    Only the org that owns the issuer (keyward.idp.issuers) is considered, so another org's
    connector for the same issuer can neither capture nor break its tokens. A shared
    (multi-tenant) issuer has no owner: there each audience is one org's, and a token naming
    several audiences is refused, since it could otherwise straddle orgs.
    """
    issuer, audience = claims.get("iss"), claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience
    if not storable_text(issuer) or not isinstance(audiences, list) or not 0 < len(audiences) <= MAX_AUDIENCES:
        raise TokenInvalid(TokenFailure.MALFORMED)
    # Checked before any query: claim text reaches the database only once it is text it can hold.
    if not all(storable_text(item) for item in audiences):
        raise TokenInvalid(TokenFailure.MALFORMED)
    connectors = IdpConnector.objects.select_related("org", "dev_key").filter(issuer=issuer, audience__in=audiences)
    if is_shared_issuer(issuer):
        if len(audiences) != 1:
            raise TokenInvalid(TokenFailure.WRONG_AUDIENCE, "A token from a shared issuer must name one audience.")
    else:
        connectors = connectors.filter(org__idp_issuers__issuer=issuer)
    if not settings.DEV_MODE:
        connectors = connectors.exclude(kind=IdpKind.DEV)
    found = list(connectors[:2])
    if not found:
        raise TokenInvalid(TokenFailure.WRONG_ISSUER)
    if len(found) > 1:
        # Two of the owning org's connectors match (one per audience the token names): ambiguous, refuse.
        raise TokenInvalid(TokenFailure.WRONG_AUDIENCE)
    return found[0]


class ConnectorTokenInvalid(TokenInvalid):
    """A token refused by the connector its `iss`/`aud` selected. `org` is that connector's org: a
    forged or expired token aimed at an org is an attack on that org, so its audit chain shows it."""

    def __init__(self, refusal: TokenInvalid, org: Org):
        super().__init__(refusal.reason)
        self.message = refusal.message
        self.args = refusal.args
        self.org = org


def verify_user_token(token: str) -> VerifiedUser:
    """Verify an end-user token against the connector its issuer and audience select; else TokenInvalid
    (ConnectorTokenInvalid, naming the org, once a connector was selected)."""
    connector = _candidate_connector(peek_claims(token))
    try:
        claims = verify_jwt(
            token,
            keys=key_source_for(connector),
            algorithms=connector.allowed_algorithms,
            issuer=connector.issuer,
            audience=connector.audience,
            required_claims=("sub",),
        )
        subject = claims["sub"]
        if not storable_text(subject, 255):
            raise TokenInvalid(TokenFailure.MALFORMED)
    except TokenInvalid as refusal:
        raise ConnectorTokenInvalid(refusal, connector.org) from None
    return VerifiedUser(org=connector.org, connector=connector, subject=subject, claims=claims)
