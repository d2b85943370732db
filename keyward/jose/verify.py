"""The one place keyward verifies a JWT: end-user tokens, agent attestations and keyward's own tokens.

The order matters. Size and shape are checked before any parsing; the header is parsed here (not
by a library that might honour `jku` or `jwk`) and only `alg`, `kid`, `typ` and `crit` are read
from it; the signature is checked with a key from the configured source before any claim is
trusted; then time, issuer, audience and token type.
"""

import base64
import binascii
import json
import math
import re
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import josepy

from keyward.jose.errors import TokenFailure, TokenInvalid
from keyward.jose.keys import (
    MAX_KID_LENGTH,
    SIGNATURE_ALGORITHMS,
    SUPPORTED_ALGORITHMS,
    KeySource,
    key_fits_algorithm,
)
from keyward.jose.types import KEYWARD_TOKEN_TYPES, TokenType

MAX_TOKEN_BYTES = 16 * 1024
DEFAULT_LEEWAY = 30
MAX_LEEWAY = 120

_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member")
    return result


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _b64url_decode(segment: str) -> bytes:
    """Strict base64url: no padding, and only the one canonical spelling of each byte string."""
    if len(segment) % 4 == 1:
        raise TokenInvalid(TokenFailure.MALFORMED)
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise TokenInvalid(TokenFailure.MALFORMED) from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != segment:
        raise TokenInvalid(TokenFailure.MALFORMED)
    return raw


def _json_object(segment: str) -> dict[str, Any]:
    try:
        value = json.loads(
            _b64url_decode(segment).decode("utf-8"),
            object_pairs_hook=_reject_duplicate_keys,
            parse_constant=_reject_constant,
        )
    except (ValueError, RecursionError):
        raise TokenInvalid(TokenFailure.MALFORMED) from None
    if not isinstance(value, dict):
        raise TokenInvalid(TokenFailure.MALFORMED)
    return value


def _normalize_typ(value: Any) -> str:
    """RFC 7515 §4.1.9: compare media types case-insensitively, with `application/` optional."""
    if not isinstance(value, str):
        raise TokenInvalid(TokenFailure.MALFORMED)
    lowered = value.lower()
    return lowered.removeprefix("application/")


def _numeric_date(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenInvalid(TokenFailure.MALFORMED, f"Claim '{name}' is not a number.")
    try:
        number = float(value)  # JSON integers are unbounded; one past float's range overflows here
    except OverflowError:
        raise TokenInvalid(TokenFailure.MALFORMED, f"Claim '{name}' is out of range.") from None
    if not math.isfinite(number):
        raise TokenInvalid(TokenFailure.MALFORMED, f"Claim '{name}' is not a number.")
    return number


def _allowed_algorithms(algorithms: Iterable[str]) -> frozenset[str]:
    allowed = frozenset([algorithms] if isinstance(algorithms, str) else algorithms)
    if not allowed:
        raise ValueError("at least one signature algorithm must be allowed")
    unsupported = allowed - SUPPORTED_ALGORITHMS
    if unsupported:
        raise ValueError(
            f"unsupported signature algorithm(s) {sorted(unsupported)}; allowed are {sorted(SUPPORTED_ALGORITHMS)} "
            "(HMAC and 'none' can never be allowed)"
        )
    return allowed


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _timestamp(now: float | datetime | None) -> float:
    if now is None:
        return time.time()
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        return now.timestamp()
    return float(now)


def peek_claims(token: str) -> dict[str, Any]:
    """The claims of a token WITHOUT verifying it: only to choose which issuer's settings verify it next."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES or not _COMPACT_JWS.fullmatch(token):
        raise TokenInvalid(TokenFailure.MALFORMED)
    return _json_object(token.split(".")[1])


def verify_jwt(
    token: str | bytes,
    *,
    keys: KeySource,
    algorithms: Iterable[str],
    issuer: str,
    audience: str,
    token_type: TokenType | None = None,
    leeway: float | timedelta = DEFAULT_LEEWAY,
    now: float | datetime | None = None,
    required_claims: Iterable[str] = (),
) -> dict[str, Any]:
    """Verify a compact JWS JWT and return its claims, or raise TokenInvalid.

    `token_type` is set when verifying one of keyward's own tokens: the `typ` header must then be
    exactly that type. Left as None (a third party's token), a `typ` naming any keyward type is
    refused, so keyward credentials and delegation tokens never pass as user tokens.
    `exp` is always required; `required_claims` names further claims that must be present.
    """
    allowed = _allowed_algorithms(algorithms)
    if not issuer or not isinstance(issuer, str) or not audience or not isinstance(audience, str):
        raise ValueError("issuer and audience must be non-empty strings")
    leeway_seconds = _seconds(leeway)
    if not 0 <= leeway_seconds <= MAX_LEEWAY:
        raise ValueError(f"leeway must be between 0 and {MAX_LEEWAY} seconds")
    current = _timestamp(now)

    if isinstance(token, bytes):
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenInvalid(TokenFailure.TOO_LARGE)
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError:
            raise TokenInvalid(TokenFailure.MALFORMED) from None
    if not isinstance(token, str):
        raise TokenInvalid(TokenFailure.MALFORMED)
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenInvalid(TokenFailure.TOO_LARGE)
    if not _COMPACT_JWS.fullmatch(token):
        raise TokenInvalid(TokenFailure.MALFORMED)
    header_segment, payload_segment, signature_segment = token.split(".")

    header = _json_object(header_segment)
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in allowed:
        raise TokenInvalid(TokenFailure.ALG_NOT_ALLOWED)
    if "crit" in header:
        raise TokenInvalid(TokenFailure.UNSUPPORTED_HEADER)
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH):
        raise TokenInvalid(TokenFailure.MALFORMED)
    # jku, x5u, jwk and x5c are never read: the key comes from the configured source only.

    jwk = keys.key_for(kid)
    if jwk is None:
        raise TokenInvalid(TokenFailure.UNKNOWN_KID)
    jwk = jwk.public_key()
    if not key_fits_algorithm(jwk, algorithm):
        raise TokenInvalid(TokenFailure.KEY_MISMATCH)
    signature = _b64url_decode(signature_segment)
    signing_input = f"{header_segment}.{payload_segment}".encode("ascii")
    try:
        valid = SIGNATURE_ALGORITHMS[algorithm].verify(jwk.key, signing_input, signature)
    except (ValueError, TypeError, josepy.errors.Error):
        valid = False
    if not valid:
        raise TokenInvalid(TokenFailure.BAD_SIGNATURE)

    claims = _json_object(payload_segment)
    _check_type(header, token_type)
    _check_times(claims, current, leeway_seconds)
    _check_issuer_and_audience(claims, issuer, audience)
    for name in required_claims:
        if claims.get(name) is None:
            raise TokenInvalid(TokenFailure.MISSING_CLAIM, f"Claim '{name}' is missing.")
    return claims


def _check_type(header: dict[str, Any], token_type: TokenType | None) -> None:
    typ = header.get("typ")
    if token_type is not None:
        if typ is None or _normalize_typ(typ) != TokenType(token_type).value:
            raise TokenInvalid(TokenFailure.WRONG_TYPE)
    elif typ is not None and _normalize_typ(typ) in KEYWARD_TOKEN_TYPES:
        raise TokenInvalid(TokenFailure.WRONG_TYPE)


def _check_times(claims: dict[str, Any], current: float, leeway: float) -> None:
    expires = _numeric_date(claims, "exp")
    if expires is None:
        raise TokenInvalid(TokenFailure.MISSING_CLAIM, "Claim 'exp' is missing.")
    if current >= expires + leeway:
        raise TokenInvalid(TokenFailure.EXPIRED)
    not_before = _numeric_date(claims, "nbf")
    if not_before is not None and current + leeway < not_before:
        raise TokenInvalid(TokenFailure.NOT_YET_VALID)
    issued_at = _numeric_date(claims, "iat")
    if issued_at is not None and current + leeway < issued_at:
        raise TokenInvalid(TokenFailure.ISSUED_IN_FUTURE)


def _check_issuer_and_audience(claims: dict[str, Any], issuer: str, audience: str) -> None:
    token_issuer = claims.get("iss")
    if token_issuer is None:
        raise TokenInvalid(TokenFailure.MISSING_CLAIM, "Claim 'iss' is missing.")
    if token_issuer != issuer:
        raise TokenInvalid(TokenFailure.WRONG_ISSUER)
    token_audience = claims.get("aud")
    if token_audience is None:
        raise TokenInvalid(TokenFailure.MISSING_CLAIM, "Claim 'aud' is missing.")
    audiences = [token_audience] if isinstance(token_audience, str) else token_audience
    if not isinstance(audiences, list) or not all(isinstance(item, str) for item in audiences):
        raise TokenInvalid(TokenFailure.MALFORMED, "Claim 'aud' is not a string or a list of strings.")
    if audience not in audiences:
        raise TokenInvalid(TokenFailure.WRONG_AUDIENCE)
