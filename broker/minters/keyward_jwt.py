"""`keyward_jwt`: keyward signs the credential itself (ES256, verifiable by anyone through /v1/jwks)."""

from django.conf import settings

from broker.minters import Minted, MintRequest
from keyward.crypto.signing import sign_token
from keyward.jose.types import TokenType

CREDENTIAL_TYPE = "Bearer"


def actor_claim(chain: list[str]) -> dict:
    """RFC 8693 `act`: the current actor outermost, each earlier actor nested inside it."""
    claim: dict = {}
    for agent_name in chain:
        claim = {"sub": agent_name, **({"act": claim} if claim else {})}
    return claim


def mint(request: MintRequest) -> Minted:
    claims = {
        "iss": settings.KEYWARD_ISSUER,
        "sub": request.end_user,
        "aud": request.provider.config.get("audience") or request.provider.name,
        "org": request.org.slug,
        "scope": request.scope,
        "env": request.environment,
        "jti": request.jti,
        "iat": int(request.issued_at.timestamp()),
        "nbf": int(request.issued_at.timestamp()),
        "exp": int(request.expires_at.timestamp()),
        "act": actor_claim(request.chain),
    }
    return Minted(
        credential=sign_token(claims, TokenType.CREDENTIAL), token_type=CREDENTIAL_TYPE, expires_at=request.expires_at
    )
