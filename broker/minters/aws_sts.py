"""`aws_sts`: temporary AWS credentials from STS AssumeRole, narrowed by a session policy per scope.

Config (checked in `keyward/providers/kinds.py`): `{role_arn, region, scope_policies, endpoint_url?,
external_id?}`; secret: `{"access_key_id", "secret_access_key"}` of the IAM identity keyward calls
STS as. What keyward asks AWS for:

- `DurationSeconds`: the TTL, raised to AWS's minimum of 900 s when shorter. The answer then says
  `ttl_clamped_up_to`, and the record keeps AWS's real expiry. A delegated request that this would
  make outlive its parent is refused before AWS is called.
- `Policy`: the union of the requested scopes' statements from `scope_policies`, so the credential
  can do no more than its scopes allow (nor more than the role allows). A scope with no statements
  is refused before AWS is called.
- `RoleSessionName` names the agent and `SourceIdentity` the end user, both through `aws_name`.

Transport: boto3 builds, signs and parses the call, and its bytes travel through keyward's guarded
session (`keyward.net.outbound`, hooked in at botocore's documented `before-send` event). That
session resolves the endpoint once, checks every address with the SSRF guard and connects only to
those addresses, so an endpoint that re-resolves to a private or metadata address between save and
connect is refused: there is no DNS-rebinding window. It also ignores proxy variables, has connect,
read and total timeouts and caps the answer's size. botocore's own retries are off; `resilience.call`
retries connection errors, timeouts, 5xx and throttling, and keeps the provider's breaker.

Hermetic: the botocore session reads no environment variable and no ~/.aws file, so the only
credentials it can sign with are the provider's secret, and nothing (AWS_PROFILE, AWS_ENDPOINT_URL_STS,
AWS_DEFAULTS_MODE=auto, a credentials file...) can redirect the call or send it to the instance
metadata service.

Revocation: STS session credentials cannot be revoked one by one, so this minter has no `revoke`;
the record says so in `native.upstream_revocation`.
"""

import hashlib
import json
import logging
import os
import re
import threading
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import boto3
import botocore.session
import requests
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError
from django.utils import timezone

from broker.minters import Minted, MintError, MintRequest, resilience
from broker.minters.resilience import RetryableError
from keyward.core.exceptions import ServiceError
from keyward.net.errors import OutboundBlocked, OutboundError
from keyward.net.outbound import REQUEST_PATH_MAX_ADDRESSES, outbound_session
from keyward.providers.kinds import MAX_AWS_SESSION_POLICY_CHARS, aws_session_policy
from keyward.providers.services import current_secret

CREDENTIAL_TYPE = "aws_sts"
MIN_DURATION_SECONDS = 900  # AWS refuses a shorter DurationSeconds
MAX_CLOCK_SKEW_SECONDS = 300
# The same budget as every other minter's call (broker/minters/http.py): an agent waits on each attempt.
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 5.0
TOTAL_TIMEOUT = 6.0  # one attempt, connect to last byte
MAX_RESPONSE_BYTES = 64 * 1024  # an AssumeRole answer is a few kilobytes
AWS_NAME_MAX_LENGTH = 64  # RoleSessionName and SourceIdentity: 2 to 64 characters
AWS_NAME_MIN_LENGTH = 2
AWS_NAME_DIGEST_CHARS = 12
MAX_UPSTREAM_TEXT_LENGTH = 16 * 1024  # session tokens have no fixed size; answers are capped anyway
UPSTREAM_REVOCATION = (
    "unsupported: AWS STS session credentials cannot be revoked one by one; they expire at expires_at. "
    "To cut them off sooner, deny the role's sessions with an IAM policy condition on aws:TokenIssueTime "
    "(or on aws:SourceIdentity for one end user)."
)
# AWS answers throttling with a 400 and one of these codes; a short backoff may get through.
THROTTLING_CODES = frozenset({"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"})
_NOT_AWS_NAME_CHARACTER = re.compile(r"[^A-Za-z0-9_+=,.@-]")
_AWS_ERROR_CODE = re.compile(r"[A-Za-z][A-Za-z0-9.]{0,63}")

# botocore logs whole answers at DEBUG, and an AssumeRole answer holds the secret key and session
# token: KEYWARD_LOG_LEVEL=DEBUG must not put them in the logs.
logging.getLogger("botocore").setLevel(logging.INFO)

_session_lock = threading.Lock()


def mint(request: MintRequest) -> Minted:
    config = request.provider.config
    if not all(config.get(key) for key in ("role_arn", "region", "scope_policies")):  # saved configs have them
        raise MintError(
            "The provider's config lacks role_arn, region or scope_policies.", upstream_error="provider_misconfigured"
        )
    ttl = int((request.expires_at - request.issued_at).total_seconds())
    duration = max(ttl, MIN_DURATION_SECONDS)
    if request.not_after is not None and request.issued_at + timedelta(seconds=duration) > request.not_after:
        raise MintError(
            f"AWS STS credentials live at least {MIN_DURATION_SECONDS} s, so this one would outlive the credential "
            "it is delegated from.",
            upstream_error="ttl_below_provider_minimum",
        )
    parameters = {
        "RoleArn": config["role_arn"],
        "RoleSessionName": aws_name(request.agent.name),
        "SourceIdentity": aws_name(request.end_user),
        "DurationSeconds": duration,
        "Policy": session_policy(config["scope_policies"], request.scopes),
    }
    if config.get("external_id"):
        parameters["ExternalId"] = config["external_id"]
    keys = _access_keys(request)
    answer = resilience.call(f"provider:{request.provider.pk}", lambda: _assume_role(config, keys, parameters))
    return _minted(answer, parameters, request, clamped=duration > ttl)


def session_policy(scope_policies: dict[str, list[dict]], scopes: list[str]) -> str:
    """The union of the scopes' statements, each once. Raises MintError for a scope the config does not map."""
    statements: list[dict] = []
    for scope in scopes:
        mapped = scope_policies.get(scope)
        if mapped is None:
            raise MintError(
                f"The provider maps no session policy to the scope {scope!r}; add it to config.scope_policies.",
                upstream_error="scope_not_mapped",
            )
        statements.extend(statement for statement in mapped if statement not in statements)
    document = aws_session_policy(statements)
    if len(document) > MAX_AWS_SESSION_POLICY_CHARS:
        raise MintError(
            f"Together these scopes' session policy is longer than AWS's {MAX_AWS_SESSION_POLICY_CHARS} characters; "
            "ask for fewer scopes at once.",
            upstream_error="session_policy_too_large",
        )
    return document


def aws_name(value: str) -> str:
    """`value` as a RoleSessionName or SourceIdentity: 2 to 64 characters of `A-Z a-z 0-9 _ + = , . @ -`.

    A value that already fits is sent as it is. Any other is rewritten the same way every time: each
    character outside that set becomes `-`, the result is cut to 51 characters, and `.` plus the first
    12 hex digits of SHA-256 of the original is appended, so two names that clean up alike (or share
    a long prefix) still differ in CloudTrail. keyward's own audit row keeps the full name.
    """
    if AWS_NAME_MIN_LENGTH <= len(value) <= AWS_NAME_MAX_LENGTH and not _NOT_AWS_NAME_CHARACTER.search(value):
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:AWS_NAME_DIGEST_CHARS]
    cleaned = _NOT_AWS_NAME_CHARACTER.sub("-", value)[: AWS_NAME_MAX_LENGTH - AWS_NAME_DIGEST_CHARS - 1]
    return f"{cleaned}.{digest}"


def _access_keys(request: MintRequest) -> dict[str, str]:
    try:
        return json.loads(current_secret(request.provider))
    except ServiceError as exc:
        raise MintError(exc.message, upstream_error=exc.code) from None


@cache
def _hermetic_session() -> boto3.session.Session:
    """A boto3 session blind to the environment and to ~/.aws: every setting is botocore's default.

    Made once: wrapping a botocore session in a boto3 one adds to its loader's paths and handlers.
    """
    session = botocore.session.Session()
    for name, (_config_key, _env_vars, default, convert) in list(session.session_var_map.items()):
        session.session_var_map[name] = (None, None, default, convert)
    for name in ("config_file", "credentials_file"):
        session.session_var_map[name] = (None, None, os.devnull, None)  # not a regular file: read as absent
    return boto3.session.Session(botocore_session=session)


def _sts_client(config: dict, keys: dict[str, str]) -> Any:
    client_config = Config(
        region_name=config["region"],
        retries={"total_max_attempts": 1, "mode": "standard"},  # resilience.call retries
        ignore_configured_endpoint_urls=True,
        user_agent_extra="keyward",
    )
    with _session_lock:  # a session is not thread-safe; the client it makes is
        client = _hermetic_session().client(
            "sts",
            endpoint_url=config.get("endpoint_url"),
            aws_access_key_id=keys["access_key_id"],
            aws_secret_access_key=keys["secret_access_key"],
            config=client_config,
        )
    client.meta.events.register("before-send.sts", _send_through_guard)
    return client


class _ReceivedBody:
    """The `raw` of an AWSResponse whose body has already been read in full (and capped)."""

    def __init__(self, content: bytes):
        self._content = content

    def stream(self, **_: Any):
        yield self._content


def _send_through_guard(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
    """botocore's `before-send` hook: send the signed request through keyward's SSRF-guarded session."""
    with outbound_session(
        max_response_bytes=MAX_RESPONSE_BYTES, total_timeout=TOTAL_TIMEOUT, max_addresses=REQUEST_PATH_MAX_ADDRESSES
    ) as session:
        response = session.request(
            request.method,
            request.url,
            headers=dict(request.headers.items()),
            data=request.body,
            timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
        )
    return AWSResponse(request.url, response.status_code, response.headers, _ReceivedBody(response.content))


def _assume_role(config: dict, keys: dict[str, str], parameters: dict) -> dict:
    """One AssumeRole call; every failure becomes a MintError carrying AWS's status and error code only."""
    try:
        return _sts_client(config, keys).assume_role(**parameters)
    except ClientError as exc:
        raise _upstream_refusal(exc) from None
    except OutboundBlocked as exc:
        raise MintError(f"keyward will not call this STS endpoint: {exc.message}", upstream_error=exc.code) from None
    except OutboundError as exc:
        error = RetryableError if exc.code == "timeout" else MintError
        raise error(f"AWS STS's answer was unusable: {exc.message}", upstream_error=exc.code) from None
    except requests.Timeout:
        raise RetryableError("AWS STS took too long to answer.", upstream_error="timeout") from None
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
        raise RetryableError("AWS STS could not be reached.", upstream_error="unreachable") from None
    except requests.RequestException:
        raise MintError("The request to AWS STS failed.", upstream_error="request_failed") from None
    except ResponseParserError:
        raise MintError("AWS STS's answer could not be read.", upstream_error="bad_response") from None
    except BotoCoreError as exc:
        raise MintError(f"boto3 refused the call ({type(exc).__name__}).", upstream_error="sdk_error") from None


def _upstream_refusal(exc: ClientError) -> MintError:
    """AWS's HTTP status and error code (e.g. AccessDenied): never its message, which may quote the request."""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    status = status if isinstance(status, int) else None
    code = exc.response.get("Error", {}).get("Code")
    if not (isinstance(code, str) and _AWS_ERROR_CODE.fullmatch(code)):
        code = f"http_{status}"
    if (status is not None and status >= 500) or code in THROTTLING_CODES:
        return RetryableError(f"AWS STS failed ({code}).", upstream_status=status, upstream_error=code)
    return MintError(f"AWS STS refused ({code}).", upstream_status=status, upstream_error=code)


def _minted(answer: dict, parameters: dict, request: MintRequest, *, clamped: bool) -> Minted:
    credentials = answer.get("Credentials") or {}
    role_user = answer.get("AssumedRoleUser") or {}
    access_key_id, secret_access_key, session_token, assumed_role_arn = (
        credentials.get("AccessKeyId"),
        credentials.get("SecretAccessKey"),
        credentials.get("SessionToken"),
        role_user.get("Arn"),
    )
    expiration = credentials.get("Expiration")
    duration = parameters["DurationSeconds"]
    latest = timezone.now() + timedelta(seconds=duration + MAX_CLOCK_SKEW_SECONDS)
    usable = (
        all(_plain_text(value) for value in (access_key_id, secret_access_key, session_token, assumed_role_arn))
        and isinstance(expiration, datetime)
        and expiration.tzinfo is not None
        and request.issued_at < expiration <= latest
    )
    if not usable:
        raise MintError(
            "AWS STS answered without usable credentials.", upstream_status=200, upstream_error="bad_response"
        )
    expiration = expiration.astimezone(UTC)
    return Minted(
        credential={
            "access_key_id": access_key_id,
            "secret_access_key": secret_access_key,
            "session_token": session_token,
            "expiration": expiration.isoformat().replace("+00:00", "Z"),
        },
        token_type=CREDENTIAL_TYPE,
        expires_at=expiration,
        native={
            "role_arn": parameters["RoleArn"],
            "assumed_role_arn": assumed_role_arn,
            # Not a secret (CloudTrail logs it): it is how an operator finds this session's calls.
            "access_key_id": access_key_id,
            "role_session_name": parameters["RoleSessionName"],
            "source_identity": parameters["SourceIdentity"],
            "duration_seconds": duration,
            "upstream_revocation": UPSTREAM_REVOCATION,
        },
        revocable_upstream=False,
        ttl_clamped_up_to=duration if clamped else None,
    )


def _plain_text(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_UPSTREAM_TEXT_LENGTH and value.isprintable()
