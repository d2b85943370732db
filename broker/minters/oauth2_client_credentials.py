"""`oauth2_client_credentials`: an access token from the provider's token endpoint (RFC 6749 §4.4).

keyward authenticates as the configured client (`client_secret_basic` or `client_secret_post`),
asks for exactly the requested scopes (and the configured `audience`), and hands out the access
token. The token-endpoint plumbing here (client authentication, reading the token answer) is
shared with `oauth2_token_exchange`.

A token answer is refused, and the token not handed out, when it is not a bearer token or when
its `scope` names a scope that was not asked for: keyward's record must never understate what a
credential can do. A refresh token in the answer is ignored (never handed out, never kept).
"""

import base64
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import quote_plus

from django.utils import timezone

from broker.minters import Minted, MintError, MintRequest, http
from keyward.core.exceptions import ServiceError
from keyward.providers.models import Provider
from keyward.providers.services import current_secret

CREDENTIAL_TYPE = "Bearer"
GRANT_TYPE = "client_credentials"
MAX_TOKEN_LENGTH = 8192
MAX_EXPIRES_IN = 10 * 365 * 24 * 3600
_TOKEN_TYPE_URN = re.compile(r"urn:[A-Za-z0-9._:-]{1,200}")


def mint(request: MintRequest) -> Minted:
    form = {"grant_type": GRANT_TYPE, "scope": request.scope}
    if audience := request.provider.config.get("audience"):
        form["audience"] = audience
    token = request_token(request, form)
    return Minted(
        credential=token.access_token, token_type=CREDENTIAL_TYPE, expires_at=token.expires_at, native=token.native
    )


@dataclass(frozen=True)
class TokenAnswer:
    """The usable parts of a token endpoint's answer: the token (secret), its expiry and non-secret facts."""

    access_token: str = field(repr=False)
    expires_at: datetime
    native: dict


def request_token(
    request: MintRequest, form: dict[str, str], *, token_types: tuple[str, ...] = ("bearer",)
) -> TokenAnswer:
    """POST `form` to the token endpoint as the configured client; check and read the answer.

    `token_types` lists the (lowercase) `token_type` values keyward can hand out for this request.
    """
    provider = request.provider
    headers, form = _client_authentication(provider, form)
    answer = http.request(provider, "POST", http.required_config(provider, "token_url"), headers=headers, form=form)
    body = http.json_object(answer, "token answer")
    access_token = body.get("access_token")
    if (
        not isinstance(access_token, str)
        or not access_token
        or len(access_token) > MAX_TOKEN_LENGTH
        or not access_token.isprintable()
    ):
        raise http.bad_response(answer, "The provider's answer has no usable access_token.")
    token_type = body.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.lower() not in token_types:
        raise MintError(
            "The provider issued a kind of token keyward cannot hand out.",
            upstream_status=answer.status,
            upstream_error="unsupported_token_type",
        )
    native = {"token_type": token_type}
    issued_type = body.get("issued_token_type")  # RFC 8693 answers say what they issued
    if isinstance(issued_type, str) and _TOKEN_TYPE_URN.fullmatch(issued_type):
        native["issued_token_type"] = issued_type
    granted = body.get("scope")
    if granted is not None:
        if not isinstance(granted, str):
            raise http.bad_response(answer, "The provider's answer has a malformed scope.")
        if not set(granted.split()) <= set(request.scopes):
            raise MintError(
                "The provider granted scopes that were not asked for; the token is not handed out.",
                upstream_status=answer.status,
                upstream_error="scope_exceeded",
            )
        native["scope"] = granted
    expires_in = _expires_in(body.get("expires_in"), answer)
    if expires_in is None:
        return TokenAnswer(access_token, request.expires_at, native)
    now = timezone.now().replace(microsecond=0)
    expires_at = min(now + timedelta(seconds=expires_in), request.expires_at)
    return TokenAnswer(access_token, expires_at, {**native, "expires_in": expires_in})


def _expires_in(value: object, answer: http.Answer) -> int | None:
    """The token's lifetime in seconds, None when the provider does not say (RFC 6749 makes it optional)."""
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_EXPIRES_IN:
        raise http.bad_response(answer, "The provider's answer has a malformed expires_in.")
    return value


def _client_authentication(provider: Provider, form: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """RFC 6749 §2.3.1: HTTP Basic with form-encoded id and secret, or both in the body."""
    client_id = http.required_config(provider, "client_id")
    try:
        secret = current_secret(provider).decode()
    except ServiceError as exc:
        raise MintError(exc.message, upstream_error=exc.code) from None
    if provider.config.get("auth_method") == "client_secret_post":
        return {}, {**form, "client_id": client_id, "client_secret": secret}
    pair = f"{quote_plus(client_id, safe='')}:{quote_plus(secret, safe='')}".encode()
    return {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}, form
