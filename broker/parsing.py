"""Step 1 of the pipeline: turn the HTTP request into a `CredentialRequest`, or refuse with 400."""

import json
import re
from dataclasses import dataclass

from django.http import HttpRequest
from rest_framework.exceptions import ValidationError

from broker.refusals import InvalidBrokerRequest, InvalidUserToken
from broker.serializers import DEFAULT_TTL_SECONDS, CredentialRequestSerializer
from keyward.agents.models import AGENT_NAME_PATTERN
from keyward.core.net import client_ip
from keyward.core.validation import validated
from keyward.jose.verify import MAX_TOKEN_BYTES

MAX_BODY_BYTES = 16 * 1024
DEFAULT_ENVIRONMENT = "prod"
# The headers' grammar, shared with the OpenAPI schema (broker/api.py).
AGENT_HEADER_PATTERN = AGENT_NAME_PATTERN
ENVIRONMENT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,200}$"
# A token header holds something besides spaces and tabs (which HTTP strips) and at most MAX_TOKEN_BYTES.
TOKEN_HEADER_PATTERN = r"[^ \t]"  # noqa: S105 - a pattern, not a secret
AGENT_HEADER = re.compile(AGENT_HEADER_PATTERN)
ENVIRONMENT = re.compile(ENVIRONMENT_PATTERN)
IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


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
    value = value.strip(" \t")
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
    try:
        return validated(CredentialRequestSerializer, body)
    except ValidationError as exc:
        raise InvalidBrokerRequest("The request body is invalid; see fields.", fields=exc.detail) from None


def parse_credential_request(request: HttpRequest) -> CredentialRequest:
    agent_name = request.headers.get("X-Keyward-Agent", "")
    if not AGENT_HEADER.fullmatch(agent_name):
        raise InvalidBrokerRequest("X-Keyward-Agent must name a registered agent.")
    environment = request.headers.get("X-Keyward-Environment", DEFAULT_ENVIRONMENT)
    if not ENVIRONMENT.fullmatch(environment):
        raise InvalidBrokerRequest("X-Keyward-Environment must be a lowercase name such as prod or staging.")
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key is not None and not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        raise InvalidBrokerRequest("Idempotency-Key must be 1-200 printable ASCII characters.")

    body = _body(request)

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
        provider_name=body["provider"],
        scopes=body["scope"],
        ttl_seconds=body.get("ttl") or DEFAULT_TTL_SECONDS,
        user_token=user_token,
        delegation_token=delegation_token,
        assertion=_token_header(request, "X-Keyward-Agent-Assertion"),
        idempotency_key=idempotency_key,
        ip=client_ip(request),
    )
