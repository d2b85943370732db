"""What each provider kind accepts as config and as a secret. One small function pair per kind.

`validate_config(kind, config, name=...)` returns the config to store; `prepare_secret(kind, secret)`
returns the bytes to seal (and, for kinds whose secret defines the scopes, the scope catalogue).
Error messages name fields and scopes, never a secret value. The native-minter work adds its kinds
(or replaces the provisional rules below) by editing `KIND_RULES`.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from keyward import scopes as scope_rules
from keyward.core.exceptions import InvalidRequest
from keyward.providers.models import ProviderKind

MAX_SECRET_BYTES = 64 * 1024
MAX_CONFIG_BYTES = 16 * 1024
MAX_CONFIG_DEPTH = 8
MAX_STATIC_SCOPES = 100
MAX_STATIC_VALUE_LENGTH = 8 * 1024
MAX_AUDIENCE_LENGTH = 500


@dataclass(frozen=True)
class PreparedSecret:
    """A validated secret on its way into `ProviderSecret.seal_secret`. Never log or render it."""

    plaintext: bytes
    scopes: list[str] | None = None  # the scope catalogue the secret defines, for kinds where it does

    def __repr__(self) -> str:
        return f"PreparedSecret(<{len(self.plaintext)} bytes>, scopes={self.scopes!r})"


@dataclass(frozen=True)
class KindRules:
    config: Callable[[dict, str], dict]
    secret: Callable[[Any], PreparedSecret] | None  # None: the kind takes no secret
    scopes_from_secret: bool = False


def _config_error(message: str) -> InvalidRequest:
    return InvalidRequest(message, fields={"config": [message]})


def _secret_error(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="invalid_secret", fields={"secret": [message]})


def _no_unknown_keys(config: dict, allowed: set[str]) -> None:
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise _config_error(f"Unknown config keys: {', '.join(repr(key[:50]) for key in unknown)}.")


def _keyward_jwt_config(config: dict, name: str) -> dict:
    """`{audience?}`: the `aud` of the credentials keyward signs for this provider; default the provider name."""
    _no_unknown_keys(config, {"audience"})
    audience = config.get("audience", name)
    if not isinstance(audience, str) or not audience or len(audience) > MAX_AUDIENCE_LENGTH:
        raise _config_error(f"config.audience must be a non-empty string of at most {MAX_AUDIENCE_LENGTH} characters.")
    if not audience.isprintable() or audience != audience.strip():
        raise _config_error("config.audience must be printable text without surrounding spaces.")
    return {"audience": audience}


def _static_config(config: dict, name: str) -> dict:
    """Static providers need no config: the secret holds everything."""
    _no_unknown_keys(config, set())
    return {}


def _free_form_config(config: dict, name: str) -> dict:
    """Provisional: any small JSON object. The native-minter issue replaces this with per-kind checks."""
    _check_plain_json(config, "config", MAX_CONFIG_DEPTH)
    if len(json.dumps(config)) > MAX_CONFIG_BYTES:
        raise _config_error(f"The config is larger than {MAX_CONFIG_BYTES} bytes.")
    return config


def _check_plain_json(value: Any, path: str, depth: int) -> None:
    """Refuse what PostgreSQL's jsonb cannot store (NUL characters) and unbounded nesting."""
    if depth < 0:
        raise _config_error("The config is nested too deeply.")
    if isinstance(value, str) and "\x00" in value:
        raise _config_error(f"{path} contains a NUL character.")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain_json(key, f"{path} key", depth - 1)
            _check_plain_json(item, f"{path}.{key[:50]}", depth - 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_plain_json(item, f"{path}[{index}]", depth - 1)


def _string_secret(secret: Any) -> PreparedSecret:
    """Provisional: one opaque string (a private key, a client secret...). Validated per kind later."""
    if not isinstance(secret, str) or not secret:
        raise _secret_error("The secret must be a non-empty string.")
    plaintext = secret.encode()
    if len(plaintext) > MAX_SECRET_BYTES:
        raise _secret_error(f"The secret is larger than {MAX_SECRET_BYTES} bytes.")
    return PreparedSecret(plaintext)


def _static_secret(secret: Any) -> PreparedSecret:
    """A JSON object mapping each scope to the secret handed out for it: `{"charges:read": "rk_live_..."}`.

    The keys (scopes) are not secret and become the provider's scope catalogue; the values are.
    A string is parsed as JSON, so `manage.py rotate_secret` can read the object from stdin.
    """
    shape = "The static secret must be a JSON object mapping each scope to its secret string."
    if isinstance(secret, str):
        try:
            secret = json.loads(secret)
        except ValueError:
            raise _secret_error(shape) from None
    if not isinstance(secret, dict) or not secret:
        raise _secret_error(shape)
    if len(secret) > MAX_STATIC_SCOPES:
        raise _secret_error(f"At most {MAX_STATIC_SCOPES} scopes per static provider.")
    for scope, value in secret.items():
        if len(scope) > scope_rules.MAX_SCOPE_LENGTH or not scope_rules.SCOPE.match(scope):
            raise _secret_error(f"{scope[:50]!r} is not a scope (wildcards are not allowed here).")
        if not isinstance(value, str) or not value or len(value) > MAX_STATIC_VALUE_LENGTH:
            raise _secret_error(
                f"The secret for {scope!r} must be a string of 1 to {MAX_STATIC_VALUE_LENGTH} characters."
            )
    plaintext = json.dumps(secret, sort_keys=True, separators=(",", ":")).encode()
    if len(plaintext) > MAX_SECRET_BYTES:
        raise _secret_error(f"The secret is larger than {MAX_SECRET_BYTES} bytes.")
    return PreparedSecret(plaintext, scopes=sorted(secret))


KIND_RULES: dict[str, KindRules] = {
    ProviderKind.KEYWARD_JWT: KindRules(config=_keyward_jwt_config, secret=None),
    ProviderKind.STATIC: KindRules(config=_static_config, secret=_static_secret, scopes_from_secret=True),
    ProviderKind.GITHUB_APP: KindRules(config=_free_form_config, secret=_string_secret),
    ProviderKind.AWS_STS: KindRules(config=_free_form_config, secret=_string_secret),
    ProviderKind.OAUTH2_CLIENT_CREDENTIALS: KindRules(config=_free_form_config, secret=_string_secret),
    ProviderKind.OAUTH2_TOKEN_EXCHANGE: KindRules(config=_free_form_config, secret=_string_secret),
}


def rules_for(kind: str) -> KindRules:
    try:
        return KIND_RULES[kind]
    except KeyError:
        message = f"Unknown provider kind; use one of {', '.join(sorted(KIND_RULES))}."
        raise InvalidRequest(message, fields={"kind": [message]}) from None


def validate_config(kind: str, config: Any, *, name: str) -> dict:
    if not isinstance(config, dict):
        raise _config_error("The config must be a JSON object.")
    return rules_for(kind).config(config, name)


def prepare_secret(kind: str, secret: Any) -> PreparedSecret:
    rules = rules_for(kind)
    if rules.secret is None:
        raise _secret_error(f"{kind} providers take no secret: keyward signs their credentials with its own key.")
    return rules.secret(secret)
