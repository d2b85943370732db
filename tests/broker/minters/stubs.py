"""Real HTTP servers on 127.0.0.1 that play GitHub and OAuth 2.0 token endpoints for the minter tests.

Each fake checks what the real provider checks (the app JWT's RS256 signature and claims, client
authentication, form fields, the actor token's signature against keyward's JWKS) and refuses the
way the real one does, so a minter that sends the wrong thing fails its test.
"""

import base64
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import josepy
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.local_http import QuietHTTPServer

HOLD_LIMIT_SECONDS = 10  # a held answer is released by the fixture's teardown long before this


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str:
        return next((value for key, value in self.headers.items() if key.lower() == name.lower()), "")

    def form(self) -> dict[str, str] | None:
        """The urlencoded body, one value per name; None when it is not a well-formed form."""
        if self.header("Content-Type").split(";")[0].strip() != "application/x-www-form-urlencoded":
            return None
        try:
            fields = parse_qs(self.body.decode(), keep_blank_values=True, strict_parsing=True)
        except (ValueError, UnicodeDecodeError):
            return None
        if any(len(values) != 1 for values in fields.values()):
            return None
        return {name: values[0] for name, values in fields.items()}


@dataclass
class Reply:
    status: int = 200
    json_body: Any = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None

    def encoded(self) -> bytes:
        return json.dumps(self.json_body).encode() if self.json_body is not None else self.body


App = Callable[[Seen], Reply]


class StubServer:
    """A ThreadingHTTPServer on 127.0.0.1 (port 0) whose answers come from `app`; it keeps every request."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server = QuietHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def count(self, method: str | None = None, path: str | None = None) -> int:
        with self._lock:
            return sum(1 for seen in self.seen if method in (None, seen.method) and path in (None, seen.path))

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def do_DELETE(self) -> None:
                self._answer()

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen = Seen(self.command, self.path, dict(self.headers), body)
                with stub._lock:
                    stub.seen.append(seen)
                reply = stub.app(seen)
                if reply.hold is not None:
                    reply.hold.wait(HOLD_LIMIT_SECONDS)
                payload = reply.encoded()
                try:
                    self.send_response(reply.status)
                    if reply.json_body is not None:
                        self.send_header("Content-Type", "application/json")
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on a held answer: what a timeout test wants

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def b64url_json(segment: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def verify_rs256(token: str, public_key: rsa.RSAPublicKey) -> dict | None:
    """The claims of an RS256 compact JWS signed by `public_key`'s private half, else None."""
    try:
        header_b64, payload_b64, signature_b64 = token.split(".")
        header = b64url_json(header_b64)
        signature = base64.urlsafe_b64decode(signature_b64 + "=" * (-len(signature_b64) % 4))
        public_key.verify(signature, f"{header_b64}.{payload_b64}".encode(), padding.PKCS1v15(), hashes.SHA256())
        claims = b64url_json(payload_b64)
    except (ValueError, InvalidSignature):
        return None
    return claims if header.get("alg") == "RS256" else None


class FakeGitHub:
    """GitHub's installation-token API for one app installation, as strict as the real one."""

    LEVELS = ("read", "write", "admin")

    def __init__(self, *, app_id: int, installation_id: int, public_key: rsa.RSAPublicKey, granted: dict[str, str]):
        self.app_id = app_id
        self.installation_id = installation_id
        self.public_key = public_key
        self.granted = granted  # what the installation may hand out
        self.token_lifetime = timedelta(hours=1)
        self.extra_permissions: dict[str, str] = {}  # a misbehaving GitHub grants these on top
        self.fail_with: Reply | None = None  # answer every token request with this instead
        self.fail_revoke_with: Reply | None = None
        self.issued: list[str] = []
        self.revoked: list[str] = []
        self.claims: list[dict] = []
        self.bodies: list[dict] = []

    @property
    def token_path(self) -> str:
        return f"/app/installations/{self.installation_id}/access_tokens"

    def __call__(self, seen: Seen) -> Reply:
        if seen.method == "POST" and seen.path == self.token_path:
            return self.fail_with or self._access_token(seen)
        if seen.method == "DELETE" and seen.path == "/installation/token":
            return self.fail_revoke_with or self._revoke(seen)
        return Reply(404, {"message": "Not Found"})

    def _access_token(self, seen: Seen) -> Reply:
        scheme, _, jwt = seen.header("Authorization").partition(" ")
        claims = verify_rs256(jwt, self.public_key) if scheme == "Bearer" else None
        now = int(time.time())
        if (
            claims is None
            or str(claims.get("iss")) != str(self.app_id)
            or not isinstance(claims.get("iat"), int)
            or not isinstance(claims.get("exp"), int)
            or claims["exp"] - claims["iat"] > 600
            or claims["exp"] <= now
            or claims["iat"] > now + 60
        ):
            return Reply(401, {"message": "A JSON web token could not be decoded", "documentation_url": "x"})
        self.claims.append(claims)
        if seen.header("Accept") != "application/vnd.github+json":
            return Reply(415, {"message": "Unsupported Media Type"})
        try:
            body = json.loads(seen.body)
        except ValueError:
            return Reply(400, {"message": "Problems parsing JSON"})
        self.bodies.append(body)
        permissions = body.get("permissions", {})
        for permission, level in permissions.items():
            ceiling = self.granted.get(permission)
            if ceiling is None or self.LEVELS.index(level) > self.LEVELS.index(ceiling):
                return Reply(422, {"message": "The permissions requested are not granted to this installation."})
        token = "ghs_" + secrets.token_urlsafe(27)
        self.issued.append(token)
        expires_at = datetime.now(UTC).replace(microsecond=0) + self.token_lifetime
        repositories = body.get("repositories")
        return Reply(
            201,
            {
                "token": token,
                "expires_at": expires_at.isoformat().replace("+00:00", "Z"),
                "permissions": {**permissions, "metadata": "read", **self.extra_permissions},
                "repository_selection": "selected" if repositories else "all",
                **(
                    {"repositories": [{"name": name, "full_name": f"acme/{name}"} for name in repositories]}
                    if repositories
                    else {}
                ),
            },
        )

    def _revoke(self, seen: Seen) -> Reply:
        scheme, _, token = seen.header("Authorization").partition(" ")
        if scheme not in ("Bearer", "token") or token not in self.issued or token in self.revoked:
            return Reply(401, {"message": "Bad credentials"})
        self.revoked.append(token)
        return Reply(204)


class FakeTokenEndpoint:
    """An OAuth 2.0 token endpoint with one confidential client, checking what a real one checks."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        auth_method: str,
        grant_type: str,
        scopes: set[str],
        check: Callable[[dict[str, str]], str | None] | None = None,
    ):
        self.client_id = client_id
        self.client_secret = client_secret
        self.auth_method = auth_method
        self.grant_type = grant_type
        self.scopes = scopes
        self.check = check  # extra checks of the form; returns an OAuth error code to refuse
        self.expires_in: Any = 300
        self.answer: Callable[[dict], dict] | None = None  # rewrites a successful answer (misbehaving servers)
        self.fail_with: Reply | None = None
        self.issued: list[str] = []
        self.forms: list[dict[str, str]] = []

    def __call__(self, seen: Seen) -> Reply:
        if seen.method != "POST" or seen.path != "/oauth/token":
            return Reply(404, {"error": "not_found"})
        if self.fail_with is not None:
            return self.fail_with
        form = seen.form()
        if form is None:
            return Reply(400, {"error": "invalid_request", "error_description": "expected a urlencoded form"})
        self.forms.append(form)
        if not self._client_authenticated(seen, form):
            return Reply(401, {"error": "invalid_client"}, headers={"WWW-Authenticate": 'Basic realm="token"'})
        if form.get("grant_type") != self.grant_type:
            return Reply(400, {"error": "unsupported_grant_type"})
        requested = form.get("scope", "").split()
        if not requested or not set(requested) <= self.scopes:
            return Reply(400, {"error": "invalid_scope"})
        if self.check is not None and (error := self.check(form)):
            return Reply(400, {"error": error})
        token = "at_" + secrets.token_urlsafe(24)
        self.issued.append(token)
        answer = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": " ".join(requested),
        }
        return Reply(200, self.answer(answer) if self.answer else answer, headers={"Cache-Control": "no-store"})

    def _client_authenticated(self, seen: Seen, form: dict[str, str]) -> bool:
        authorization = seen.header("Authorization")
        if self.auth_method == "client_secret_post":
            # RFC 6749 §2.3: one method per request; the body carries both values.
            return (
                not authorization
                and form.get("client_id") == self.client_id
                and form.get("client_secret") == self.client_secret
            )
        if "client_secret" in form or not authorization.startswith("Basic "):
            return False
        try:
            pair = base64.b64decode(authorization[6:], validate=True).decode()
        except ValueError:
            return False
        client_id, _, client_secret = pair.partition(":")
        return unquote_plus(client_id) == self.client_id and unquote_plus(client_secret) == self.client_secret


def verify_keyward_jwt(token: str, jwks: dict) -> tuple[dict, dict] | None:
    """(header, claims) of a token signed by a key in keyward's published JWKS, else None."""
    try:
        jws = josepy.JWS.from_compact(token.encode())
        kid = jws.signature.combined.kid
        jwk = next(key for key in jwks["keys"] if key["kid"] == kid)
        public = josepy.JWKEC.from_json({name: jwk[name] for name in ("kty", "crv", "x", "y")})
        if not jws.verify(public):
            return None
        return jws.signature.combined.to_partial_json(), json.loads(jws.payload)
    except (StopIteration, ValueError, KeyError, josepy.errors.Error):
        return None
