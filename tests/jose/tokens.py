"""Signing keys and hand-built JWTs for tests that attack token verification (tests/jose, tests/security).

`raw_token` signs exactly the header and payload it is given, with no library opinion in between,
so a test can produce the tokens PyJWT refuses to make (odd headers, odd kids, `alg` lies).
"""

import base64
import json
from dataclasses import dataclass
from typing import Any

import josepy
import jwt
from cryptography.hazmat.primitives import serialization
from josepy import jwa


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private: Any

    @property
    def public_jwk(self) -> dict[str, Any]:
        jwk = josepy.JWK.load(self.private_pem).public_key().to_json()
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.alg}

    @property
    def private_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def sign(self, claims: dict[str, Any], *, headers: dict[str, Any] | None = None, alg: str | None = None) -> str:
        return jwt.encode(claims, self.private, algorithm=alg or self.alg, headers={"kid": self.kid, **(headers or {})})


def b64(data: bytes | dict | list | str) -> str:
    if not isinstance(data, bytes):
        data = (data if isinstance(data, str) else json.dumps(data)).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: dict[str, Any] | bytes, payload: dict[str, Any] | bytes, key: SigningKey, alg: str) -> str:
    """Sign exactly these header and payload bytes, with no library opinion in between."""
    signing_input = f"{b64(header)}.{b64(payload)}"
    signature = jwa.JWASignature.from_json(alg).sign(key.private, signing_input.encode())
    return f"{signing_input}.{b64(signature)}"
