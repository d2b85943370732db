"""`static`: hands out a stored secret chosen by scope, for providers with no minting API.

The secret cannot expire by itself; keyward records the TTL so the hand-out is audited and can be
revoked in keyward's registry (and the stored secret rotated).
"""

from broker.minters import Minted, MintError, MintRequest
from broker.refusals import ScopeNotAllowed
from keyward.core.exceptions import ServiceError
from keyward.providers.services import static_secret_for_scope

CREDENTIAL_TYPE = "static"


def mint(request: MintRequest) -> Minted:
    if len(request.scopes) != 1:
        raise ScopeNotAllowed("A static provider hands out one stored secret per request: ask for one scope.")
    try:
        secret = static_secret_for_scope(request.provider, request.scopes[0])
    except ServiceError as exc:
        raise MintError(exc.message, upstream_error=exc.code) from None
    return Minted(credential=secret, token_type=CREDENTIAL_TYPE, expires_at=request.expires_at)
