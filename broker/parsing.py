"""Step 1 of the pipeline: turn the HTTP request into a `CredentialRequest`, or refuse with 400."""

import json
import re
from dataclasses import dataclass

from django.http import HttpRequest

from broker.refusals import InvalidBrokerRequest, InvalidUserToken
from keyward import scopes as scope_rules
from keyward.agents.models import AGENT_NAME_PATTERN
from keyward.core.net import client_ip
from keyward.jose.verify import MAX_TOKEN_BYTES
from keyward.providers.models import PROVIDER_NAME_PATTERN

MAX_BODY_BYTES = 16 * 1024
DEFAULT_ENVIRONMENT = "prod"
DEFAULT_TTL_SECONDS = 900
ENVIRONMENT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")
_TTL = re.compile(r"^(\d{1,9})([smh]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class CredentialRequest:
    agent_name: str
    environment: str
    provider_name: str
    scopes: list[str]
    ttl_seconds: int
    user_token: str | None
    delegation_token: str | None
    assertion: str | None
    idempotency_key: str | None
    ip: str

    @property
    def scope(self) -> str:
        return " ".join(self.scopes)


def parse_ttl(value) -> int:
    """`"90s"`, `"5m"`, `"1h"`, `"300"` or `300` -> seconds (> 0). ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("ttl must be a duration")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and (match := _TTL.match(value.strip())):
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError('ttl must look like "90s", "5m", "1h" or a number of seconds')
    if seconds <= 0:
        raise ValueError("ttl must be positive")
    return seconds


def _bearer(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidUserToken("The Authorization header must be 'Bearer <end-user token>'.")
    return token.strip()


def _token_header(request: HttpRequest, name: str) -> str | None:
    value = request.headers.get(name)
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > MAX_TOKEN_BYTES:
        raise InvalidBrokerRequest(f"{name} is empty or too large.")
    return value


def _body(request: HttpRequest) -> dict:
    if len(request.body) > MAX_BODY_BYTES:
        raise InvalidBrokerRequest("The request body is too large.")
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise InvalidBrokerRequest("The request body is not valid JSON.") from None
    except RecursionError:  # 16 KiB of brackets nest deeper than Python's parser recurses
        raise InvalidBrokerRequest("The request body is nested too deeply.") from None
    if not isinstance(body, dict):
        raise InvalidBrokerRequest('The body must be a JSON object: {"provider", "scope", "ttl"}.')
    return body


def parse_credential_request(request: HttpRequest) -> CredentialRequest:
    agent_name = (request.headers.get("X-Keyward-Agent") or "").strip()
    if not re.match(AGENT_NAME_PATTERN, agent_name):
        raise InvalidBrokerRequest("X-Keyward-Agent must name a registered agent.")
    environment = (request.headers.get("X-Keyward-Environment") or DEFAULT_ENVIRONMENT).strip()
    if not ENVIRONMENT.match(environment):
        raise InvalidBrokerRequest("X-Keyward-Environment must be a lowercase name such as prod or staging.")
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key is not None and not IDEMPOTENCY_KEY.match(idempotency_key):
        raise InvalidBrokerRequest("Idempotency-Key must be 1-200 printable ASCII characters.")

    body = _body(request)
    provider = body.get("provider")
    if not isinstance(provider, str) or not re.match(PROVIDER_NAME_PATTERN, provider):
        raise InvalidBrokerRequest("provider must name a provider.")
    try:
        scopes = scope_rules.parse_scopes(body.get("scope"))
        ttl_seconds = parse_ttl(body["ttl"]) if body.get("ttl") is not None else DEFAULT_TTL_SECONDS
    except ValueError as exc:
        raise InvalidBrokerRequest(str(exc)) from None

    user_token = _bearer(request)
    delegation_token = _token_header(request, "X-Keyward-Delegation")
    if user_token and delegation_token:
        raise InvalidBrokerRequest("Send an end-user token or a delegation token, not both.")
    if not user_token and not delegation_token:
        raise InvalidUserToken("Send the end user's identity token as 'Authorization: Bearer <token>'.")
    if user_token is not None and len(user_token) > MAX_TOKEN_BYTES:
        raise InvalidUserToken("The end-user token is too large.")
    return CredentialRequest(
        agent_name=agent_name,
        environment=environment,
        provider_name=provider,
        scopes=scopes,
        ttl_seconds=ttl_seconds,
        user_token=user_token,
        delegation_token=delegation_token,
        assertion=_token_header(request, "X-Keyward-Agent-Assertion"),
        idempotency_key=idempotency_key,
        ip=client_ip(request),
    )
