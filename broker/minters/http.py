"""HTTP for the native minters: one guarded request, its failures mapped onto `MintError`.

Every call goes through the SSRF-guarded session (`keyward.net.outbound`) with short timeouts and
through the provider's breaker (`resilience.call`), which retries what a retry can fix:

- unreachable, timed out, or answered 5xx → `RetryableError` (retried, counts toward the breaker);
- answered 429 → `MintError` `rate_limited`, not retried: the provider asked keyward to slow down,
  and a sub-second retry would only add load; the agent gets 502 and may try again later;
- any other 3xx/4xx → `MintError` with the status and the provider's error code;
- a 2xx that is not a JSON object → `MintError` `bad_response`.

Audit rows get the status and a short code only: the OAuth `error` member, or GitHub's `message`
turned into a slug, and only when it looks like a code (lowercase words joined by `_`). Anything
else becomes `http_<status>`. A body is never kept, since a provider may echo what it was sent.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

import requests

from broker.minters import MintError
from broker.minters.resilience import RetryableError, call
from keyward.net.errors import OutboundBlocked, OutboundError
from keyward.net.outbound import REQUEST_PATH_MAX_ADDRESSES, outbound_session
from keyward.providers.models import Provider

# An agent waits on each mint: short per attempt (token endpoints answer in well under a second),
# and at most resilience.MAX_ATTEMPTS attempts; a dead provider then trips the breaker.
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 5.0
TOTAL_TIMEOUT = 6.0  # one attempt, connect to last byte, however slowly the server drips
MAX_RESPONSE_BYTES = 256 * 1024  # token answers are a few hundred bytes
_ERROR_CODE = re.compile(r"[a-z]+(?:_[a-z]+){0,7}")
MAX_ERROR_CODE_LENGTH = 64


@dataclass(frozen=True)
class Answer:
    """A 2xx answer: its status and its parsed JSON body (None when it had none)."""

    status: int
    body: Any


def required_config(provider: Provider, key: str) -> Any:
    """A config value the kind requires; saved configs always have it, but a row edited by hand may not."""
    value = provider.config.get(key)
    if value in (None, ""):
        raise MintError(f"The provider's config lacks {key!r}.", upstream_error="provider_misconfigured")
    return value


def breaker_key(provider: Provider) -> str:
    return f"provider:{provider.pk}"


def request(
    provider: Provider,
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    json_body: Any = None,
    read_body: bool = True,
) -> Answer:
    """Send one request behind the provider's breaker; return the 2xx answer or raise `MintError`.

    `read_body=False` for calls whose success is the status alone (a revocation): the body is ignored.
    """
    return call(
        breaker_key(provider),
        lambda: _send(method, url, headers=headers or {}, form=form, json_body=json_body, read_body=read_body),
    )


def json_object(answer: Answer, what: str) -> dict:
    """The answer's body as a JSON object, or `MintError` `bad_response`."""
    if not isinstance(answer.body, dict):
        raise bad_response(answer, f"The provider's {what} is not a JSON object.")
    return answer.body


def bad_response(answer: Answer, message: str) -> MintError:
    return MintError(message, upstream_status=answer.status, upstream_error="bad_response")


def _send(method: str, url: str, *, headers: dict[str, str], form: Any, json_body: Any, read_body: bool) -> Answer:
    try:
        with outbound_session(
            max_response_bytes=MAX_RESPONSE_BYTES,
            total_timeout=TOTAL_TIMEOUT,
            max_addresses=REQUEST_PATH_MAX_ADDRESSES,
        ) as session:
            response = session.request(
                method,
                url,
                headers={"Accept": "application/json", **headers},
                data=form,
                json=json_body,
                timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            )
    except OutboundBlocked as exc:
        raise MintError(f"keyward will not call this provider URL: {exc.message}", upstream_error=exc.code) from None
    except OutboundError as exc:
        error = RetryableError if exc.code == "timeout" else MintError
        raise error(f"The provider's answer was unusable: {exc.message}", upstream_error=exc.code) from None
    except requests.Timeout:
        raise RetryableError("The provider took too long to answer.", upstream_error="timeout") from None
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
        raise RetryableError("The provider could not be reached.", upstream_error="unreachable") from None
    except requests.RequestException:
        raise MintError("The request to the provider failed.", upstream_error="request_failed") from None
    return _answer(response, read_body=read_body)


def _answer(response: requests.Response, *, read_body: bool) -> Answer:
    status = response.status_code
    if 200 <= status < 300:
        return Answer(status, _parse_json(response, status) if read_body else None)
    code = error_code(response)
    if status >= 500:
        raise RetryableError(f"The provider failed (HTTP {status}).", upstream_status=status, upstream_error=code)
    if status == 429:
        raise MintError("The provider is rate limiting keyward.", upstream_status=status, upstream_error="rate_limited")
    if 300 <= status < 400:
        message = f"The provider answered with a redirect (HTTP {status}), which keyward does not follow."
        raise MintError(message, upstream_status=status, upstream_error="redirect_not_followed")
    raise MintError(f"The provider refused (HTTP {status}, {code}).", upstream_status=status, upstream_error=code)


def _parse_json(response: requests.Response, status: int) -> Any:
    if not response.content:
        return None
    try:
        return json.loads(response.content)
    except (ValueError, RecursionError):
        raise MintError(
            "The provider's answer is not valid JSON.", upstream_status=status, upstream_error="bad_response"
        ) from None


def error_code(response: requests.Response) -> str:
    """A short, safe code for an error answer: OAuth's `error`, GitHub's `message` as a slug, or `http_<status>`."""
    fallback = f"http_{response.status_code}"
    try:
        body = json.loads(response.content)
    except (ValueError, RecursionError):
        return fallback
    if not isinstance(body, dict):
        return fallback
    for member, normalise in (("error", _as_is), ("message", _slug)):
        value = body.get(member)
        if isinstance(value, str) and len(value) <= MAX_ERROR_CODE_LENGTH:
            candidate = normalise(value)
            if _ERROR_CODE.fullmatch(candidate):
                return candidate
            return fallback
    return fallback


def _as_is(value: str) -> str:
    return value


def _slug(value: str) -> str:
    return "_".join(value.lower().split())
