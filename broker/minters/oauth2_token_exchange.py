"""`oauth2_token_exchange` (RFC 8693): the end user's token, with the agent as actor, for a downstream token.

keyward authenticates as the configured client and sends the end user's identity token (the one
the agent presented to keyward) as `subject_token`, and a keyward-signed `actor_token` naming the
agent, so the provider issues a token for "this agent acting for this user".

The actor token is signed with keyward's key (verifiable through /v1/jwks) and lives one minute.
Its audience is the provider's token endpoint and its `sub` the agent; it carries no scope and has
no issued-credential record, so no resource server expecting a keyward credential for its own
audience accepts it, introspection answers `{"active": false}`, and its `typ` (`kw-cred+jwt`)
keeps it from ever passing as a delegation token.

A delegated request (X-Keyward-Delegation) carries no end-user token, and keyward never keeps one,
so it is refused before any call: exchanging a keyward-made stand-in instead would let keyward
vouch for the user to the provider, a trust the provider never agreed to.
"""

import secrets
import time

from django.conf import settings

from broker.minters import Minted, MintError, MintRequest, http
from broker.minters.oauth2_client_credentials import request_token
from keyward.crypto.signing import sign_token
from keyward.jose.types import TokenType
from keyward.providers.kinds import TOKEN_TYPE_ACCESS_TOKEN

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105 - a URN
ACTOR_TOKEN_LIFETIME_SECONDS = 60
BEARER, NOT_APPLICABLE = "Bearer", "N_A"


def mint(request: MintRequest) -> Minted:
    if not request.user_token:
        raise MintError(
            "This provider exchanges the end user's own token; a delegated request has none. "
            "Ask with the end user's token instead of a delegation token.",
            upstream_error="subject_token_unavailable",
        )
    config = request.provider.config
    form = {
        "grant_type": GRANT_TYPE,
        "subject_token": request.user_token,
        "subject_token_type": JWT_TOKEN_TYPE,
        "actor_token": actor_token(request),
        "actor_token_type": JWT_TOKEN_TYPE,
        "requested_token_type": config.get("requested_token_type", TOKEN_TYPE_ACCESS_TOKEN),
        "scope": request.scope,
    }
    for name in ("audience", "resource"):
        if config.get(name):
            form[name] = config[name]
    token = request_token(request, form, token_types=(BEARER.lower(), NOT_APPLICABLE.lower()))
    token_type = BEARER if token.native["token_type"].lower() == BEARER.lower() else NOT_APPLICABLE
    return Minted(
        credential=token.access_token, token_type=token_type, expires_at=token.expires_at, native=token.native
    )


def actor_token(request: MintRequest) -> str:
    """A one-minute keyward-signed JWT naming the agent, for the provider's token endpoint only."""
    now = int(time.time())
    claims = {
        "iss": settings.KEYWARD_ISSUER,
        "sub": request.agent.name,
        "aud": http.required_config(request.provider, "token_url"),
        "org": request.org.slug,
        "jti": secrets.token_hex(16),
        "iat": now,
        "nbf": now,
        "exp": now + ACTOR_TOKEN_LIFETIME_SECONDS,
    }
    return sign_token(claims, TokenType.CREDENTIAL)
