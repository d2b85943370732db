"""`github_app`: a GitHub App installation token, down-scoped to the permissions the scopes map to.

keyward signs a short app JWT (RS256, `iss` = the app id) with the app's private key (the provider
secret), asks `POST {api_url}/app/installations/{id}/access_tokens` for a token limited to the
mapped `permissions` (and the configured `repositories`), and hands that token out. A scope maps
through `config.permissions_map` first, else by its own shape: `contents:read` → `{"contents": "read"}`.

GitHub tokens can be revoked (`DELETE {api_url}/installation/token`, authenticated with the token
itself), so the token and the API URL it came from are kept as a sealed revocation handle.
"""

import base64
import contextlib
import json
import time
from datetime import datetime

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.utils import timezone

from broker.minters import Minted, MintError, MintRequest, http
from broker.models import IssuedCredential
from broker.refusals import ScopeNotAllowed
from keyward.core.exceptions import ServiceError
from keyward.providers.kinds import GITHUB_DEFAULT_API_URL, GITHUB_LEVELS, github_permission_for_scope
from keyward.providers.models import Provider
from keyward.providers.services import current_secret

CREDENTIAL_TYPE = "github_installation_token"
API_VERSION = "2022-11-28"
JWT_BACKDATE_SECONDS = 60  # GitHub's advice: covers clock drift between keyward and GitHub
JWT_LIFETIME_SECONDS = 600  # GitHub's maximum, counted from the backdated `iat`
IMPLIED_PERMISSIONS = {"metadata": "read"}  # GitHub adds read access to metadata to every token
MAX_TOKEN_LENGTH = 1000
MAX_RECORDED_REPOSITORIES = 100


def requested_permissions(scopes: list[str], permissions_map: dict) -> dict[str, str]:
    """The `permissions` body for these scopes; the highest level wins when two scopes name one permission."""
    wanted: dict[str, str] = {}
    for scope in scopes:
        mapped = permissions_map.get(scope) or github_permission_for_scope(scope)
        if not mapped:
            raise ScopeNotAllowed(
                f"The scope {scope[:100]!r} maps to no GitHub permission: use <permission>:<read|write|admin> "
                "or add it to the provider's permissions_map."
            )
        for permission, level in mapped.items():
            if GITHUB_LEVELS.index(level) >= GITHUB_LEVELS.index(wanted.get(permission, level)):
                wanted[permission] = level
    return wanted


def app_jwt(app_id: int | str, private_key: rsa.RSAPrivateKey, now: int) -> str:
    """The app's RS256 JWT: backdated a minute, valid for GitHub's maximum of ten minutes in all."""
    issued_at = now - JWT_BACKDATE_SECONDS
    claims = {"iat": issued_at, "exp": issued_at + JWT_LIFETIME_SECONDS, "iss": app_id}
    signing_input = f"{_b64_json({'alg': 'RS256', 'typ': 'JWT'})}.{_b64_json(claims)}".encode()
    signature = private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input.decode()}.{_b64(signature)}"


def mint(request: MintRequest) -> Minted:
    provider, config = request.provider, request.provider.config
    permissions = requested_permissions(request.scopes, config.get("permissions_map") or {})
    api_url = _api_url(provider)
    body: dict = {"permissions": permissions}
    if config.get("repositories"):
        body["repositories"] = list(config["repositories"])
    installation_id = http.required_config(provider, "installation_id")
    token_jwt = app_jwt(http.required_config(provider, "app_id"), _private_key(provider), int(time.time()))
    answer = http.request(
        provider,
        "POST",
        f"{api_url}/app/installations/{int(installation_id)}/access_tokens",
        headers=_headers(token_jwt),
        json_body=body,
    )
    granted = http.json_object(answer, "installation token answer")
    token = granted.get("token")
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH or not token.isprintable():
        raise http.bad_response(answer, "GitHub's answer has no usable token.")
    try:
        expires_at = _expiry(granted.get("expires_at"), answer)
        granted_permissions = _check_permissions(granted.get("permissions"), permissions, answer)
    except MintError:
        _discard(provider, api_url, token)
        raise
    return Minted(
        credential=token,
        token_type=CREDENTIAL_TYPE,
        expires_at=min(expires_at, request.expires_at),
        native={
            "permissions": granted_permissions,
            "repository_selection": _short_text(granted.get("repository_selection")),
            "repositories": _repository_names(granted.get("repositories")),
            "expires_at": expires_at.isoformat().replace("+00:00", "Z"),
        },
        revocable_upstream=True,
        revocation_handle=json.dumps({"api_url": api_url, "token": token}).encode(),
    )


def revoke(issued: IssuedCredential, handle: bytes) -> None:
    """`DELETE /installation/token`, authenticated with the token itself, at the API it came from."""
    stored = json.loads(handle)
    _delete_token(issued.provider, stored["api_url"], stored["token"])


def discard(provider: Provider, handle: bytes) -> None:
    """Revoke a token that was minted but never handed out (its issuance failed after the mint)."""
    stored = json.loads(handle)
    _discard(provider, stored["api_url"], stored["token"])


def _discard(provider: Provider, api_url: str, token: str) -> None:
    """Best effort: revoke a token keyward will not hand out; it expires within the hour regardless."""
    with contextlib.suppress(MintError):
        _delete_token(provider, api_url, token)


def _delete_token(provider: Provider, api_url: str, token: str) -> None:
    http.request(provider, "DELETE", f"{api_url}/installation/token", headers=_headers(token), read_body=False)


def _api_url(provider: Provider) -> str:
    return str(provider.config.get("api_url") or GITHUB_DEFAULT_API_URL).rstrip("/")


def _headers(bearer: str) -> dict[str, str]:
    return {
        "Accept": "application/vnd.github+json",
        "Authorization": f"Bearer {bearer}",
        "X-GitHub-Api-Version": API_VERSION,
    }


def _private_key(provider: Provider) -> rsa.RSAPrivateKey:
    try:
        pem = current_secret(provider)
    except ServiceError as exc:
        raise MintError(exc.message, upstream_error=exc.code) from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise MintError("The provider's private key cannot be used.", upstream_error="provider_secret_invalid")
    return key


def _expiry(value: object, answer: http.Answer) -> datetime:
    try:
        expires_at = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        expires_at = None
    if expires_at is None or expires_at.tzinfo is None or expires_at <= timezone.now():
        raise http.bad_response(answer, "GitHub's answer has no usable expires_at.")
    return expires_at


def _check_permissions(value: object, requested: dict[str, str], answer: http.Answer) -> dict[str, str]:
    """GitHub's granted permissions, refused if they exceed what was asked (beyond what GitHub always adds)."""
    if value is None:
        return requested
    if not isinstance(value, dict) or not all(isinstance(level, str) for level in value.values()):
        raise http.bad_response(answer, "GitHub's answer has malformed permissions.")
    allowed = {**IMPLIED_PERMISSIONS, **requested}
    for permission, level in value.items():
        ceiling = allowed.get(permission)
        if ceiling is None or level not in GITHUB_LEVELS or GITHUB_LEVELS.index(level) > GITHUB_LEVELS.index(ceiling):
            raise MintError(
                "GitHub granted more than keyward asked for; the token is not handed out.",
                upstream_status=answer.status,
                upstream_error="permissions_exceeded",
            )
    return dict(value)


def _repository_names(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    names = (item.get("name") for item in value[:MAX_RECORDED_REPOSITORIES] if isinstance(item, dict))
    return [name for name in names if isinstance(name, str) and len(name) <= 100]


def _short_text(value: object) -> str:
    return value if isinstance(value, str) and len(value) <= 20 else ""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64_json(value: dict) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())
