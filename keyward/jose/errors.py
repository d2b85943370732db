"""The one exception every JWT refusal raises, with a stable machine reason."""

from enum import StrEnum


class TokenFailure(StrEnum):
    MALFORMED = "malformed"
    TOO_LARGE = "too_large"
    ALG_NOT_ALLOWED = "alg_not_allowed"
    UNSUPPORTED_HEADER = "unsupported_header"
    UNKNOWN_KID = "unknown_kid"
    KEY_MISMATCH = "key_mismatch"
    BAD_SIGNATURE = "bad_signature"
    MISSING_CLAIM = "missing_claim"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    ISSUED_IN_FUTURE = "issued_in_future"
    WRONG_ISSUER = "wrong_issuer"
    WRONG_AUDIENCE = "wrong_audience"
    WRONG_TYPE = "wrong_type"
    JWKS_UNAVAILABLE = "jwks_unavailable"


_MESSAGES = {
    TokenFailure.MALFORMED: "The token is not a well-formed signed JWT.",
    TokenFailure.TOO_LARGE: "The token is too large.",
    TokenFailure.ALG_NOT_ALLOWED: "The token's signature algorithm is not allowed.",
    TokenFailure.UNSUPPORTED_HEADER: "The token has a critical header keyward does not support.",
    TokenFailure.UNKNOWN_KID: "The token was signed with a key that is not in the trusted key set.",
    TokenFailure.KEY_MISMATCH: "The token's algorithm does not match its signing key.",
    TokenFailure.BAD_SIGNATURE: "The token's signature is not valid.",
    TokenFailure.MISSING_CLAIM: "The token lacks a required claim.",
    TokenFailure.EXPIRED: "The token has expired.",
    TokenFailure.NOT_YET_VALID: "The token is not valid yet.",
    TokenFailure.ISSUED_IN_FUTURE: "The token's issue time is in the future.",
    TokenFailure.WRONG_ISSUER: "The token was issued by an unexpected issuer.",
    TokenFailure.WRONG_AUDIENCE: "The token is not meant for this audience.",
    TokenFailure.WRONG_TYPE: "The token is of the wrong type for this use.",
    TokenFailure.JWKS_UNAVAILABLE: "The issuer's signing keys cannot be fetched right now.",
}


class TokenInvalid(Exception):
    """A JWT was refused. `reason` is a TokenFailure; the message never repeats token content."""

    def __init__(self, reason: TokenFailure, detail: str | None = None):
        self.reason = TokenFailure(reason)
        self.message = _MESSAGES[self.reason] if detail is None else f"{_MESSAGES[self.reason]} {detail}"
        super().__init__(self.message)
