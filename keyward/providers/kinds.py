"""What each provider kind accepts as config and as a secret. One small function pair per kind.

`validate_config(kind, config, name=...)` returns the config to store; `prepare_secret(kind, secret)`
returns the bytes to seal (and, for kinds whose secret defines the scopes, the scope catalogue).
Error messages name fields and scopes, never a secret value. A new kind is one more entry in `KIND_RULES`.
"""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from keyward import scopes as scope_rules
from keyward.core.exceptions import InvalidRequest
from keyward.net.ssrf import validate_outbound_url
from keyward.providers.models import ProviderKind

# Config keys that say where a provider's secret is sent. Changing one needs the secret again, or an
# admin could redirect a stored secret (or the tokens minted with it) to a server of their own.
SECRET_DESTINATION_KEYS = ("api_url", "token_url", "endpoint_url")
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


def _check_plain_json(value: Any, path: str, depth: int) -> None:
    """Refuse what PostgreSQL's jsonb cannot store (NUL characters) and unbounded nesting, for every kind."""
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
    """One opaque, non-empty string (a client secret, a private key before its own checks)."""
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


# --- github_app, oauth2_client_credentials, oauth2_token_exchange -------------------------------

GITHUB_DEFAULT_API_URL = "https://api.github.com"
GITHUB_LEVELS = ("read", "write", "admin")  # lowest first
MAX_GITHUB_REPOSITORIES = 500  # GitHub's own limit per installation token
MAX_PERMISSIONS_MAP = 100
MAX_CLIENT_ID_LENGTH = 255
MAX_CLIENT_SECRET_LENGTH = 4096
MIN_RSA_KEY_BITS = 2048
OAUTH2_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
TOKEN_TYPE_ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a URN
_GITHUB_PERMISSION = re.compile(r"[a-z][a-z_]{0,63}")
_GITHUB_REPOSITORY = re.compile(r"[A-Za-z0-9._-]{1,100}")
_GITHUB_CLIENT_ID = re.compile(r"Iv[0-9A-Za-z.]{1,60}")
_TOKEN_TYPE_URN = re.compile(r"urn:[A-Za-z0-9._:-]{1,200}")


def github_permission_for_scope(scope: str) -> dict[str, str] | None:
    """The default scope mapping, `<permission>:<read|write|admin>`: `contents:read` → `{"contents": "read"}`."""
    permission, _, level = scope.partition(":")
    if level in GITHUB_LEVELS and _GITHUB_PERMISSION.fullmatch(permission):
        return {permission: level}
    return None


def _outbound_url(value: Any, key: str) -> str:
    """A URL keyward will call: checked with the SSRF guard now (and again when it connects)."""
    if not isinstance(value, str):
        raise _config_error(f"config.{key} must be a URL.")
    try:
        return validate_outbound_url(value, field="config")
    except InvalidRequest as refusal:
        message = f"config.{key}: {refusal.message}"
        raise InvalidRequest(message, code=refusal.code, fields={"config": [message]}) from None


def _text(config: dict, key: str, *, max_length: int, required: bool = False) -> str | None:
    value = config.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise _config_error(f"config.{key} must be a non-empty string of at most {max_length} characters.")
    if not value.isprintable() or value != value.strip():
        raise _config_error(f"config.{key} must be printable text without surrounding spaces.")
    return value


def _positive_id(value: Any, key: str) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise _config_error(f"config.{key} must be a positive integer.")
    return value


def _github_app_config(config: dict, name: str) -> dict:
    """`{app_id, installation_id, api_url?, repositories?, permissions_map?}`."""
    _no_unknown_keys(config, {"app_id", "installation_id", "api_url", "repositories", "permissions_map"})
    app_id = config.get("app_id")
    if not (isinstance(app_id, str) and _GITHUB_CLIENT_ID.fullmatch(app_id)):
        try:
            app_id = _positive_id(app_id, "app_id")
        except InvalidRequest:
            raise _config_error("config.app_id must be the GitHub App's numeric id (or its Iv… client id).") from None
    result = {
        "app_id": app_id,
        "installation_id": _positive_id(config.get("installation_id"), "installation_id"),
        "api_url": _outbound_url(config.get("api_url", GITHUB_DEFAULT_API_URL), "api_url").rstrip("/"),
    }
    if "repositories" in config:
        result["repositories"] = _github_repositories(config["repositories"])
    if "permissions_map" in config:
        result["permissions_map"] = _github_permissions_map(config["permissions_map"])
    return result


def _github_repositories(value: Any) -> list[str]:
    shape = f"config.repositories must be a list of 1 to {MAX_GITHUB_REPOSITORIES} repository names (without owner)."
    if not isinstance(value, list) or not 0 < len(value) <= MAX_GITHUB_REPOSITORIES:
        raise _config_error(shape)
    for repository in value:
        if not isinstance(repository, str) or not _GITHUB_REPOSITORY.fullmatch(repository):
            raise _config_error(shape)
    return list(dict.fromkeys(value))


def _github_permissions_map(value: Any) -> dict[str, dict[str, str]]:
    """`{scope: {permission: level}}`, for scopes whose name is not `<permission>:<level>`."""
    shape = "config.permissions_map must map scopes to objects of GitHub permission → read, write or admin."
    if not isinstance(value, dict) or len(value) > MAX_PERMISSIONS_MAP:
        raise _config_error(f"{shape} (at most {MAX_PERMISSIONS_MAP} scopes)")
    for scope, permissions in value.items():
        if len(scope) > scope_rules.MAX_SCOPE_LENGTH or not scope_rules.SCOPE.fullmatch(scope):
            raise _config_error(f"config.permissions_map: {scope[:50]!r} is not a scope (no wildcards).")
        if not isinstance(permissions, dict) or not permissions:
            raise _config_error(shape)
        for permission, level in permissions.items():
            if not _GITHUB_PERMISSION.fullmatch(permission) or level not in GITHUB_LEVELS:
                raise _config_error(shape)
    return value


def _github_app_secret(secret: Any) -> PreparedSecret:
    """The app's private key: an unencrypted RSA key in PEM, as GitHub hands it out."""
    prepared = _string_secret(secret)
    shape = "The secret must be the GitHub App's private key: an unencrypted RSA private key in PEM."
    try:
        key = serialization.load_pem_private_key(prepared.plaintext, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise _secret_error(shape) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise _secret_error(shape)
    if key.key_size < MIN_RSA_KEY_BITS:
        raise _secret_error(f"The private key must have at least {MIN_RSA_KEY_BITS} bits.")
    return prepared


def _oauth2_config(config: dict, extra_keys: set[str]) -> dict:
    """What both OAuth 2.0 kinds share: `{token_url, client_id, audience?, auth_method?}`."""
    _no_unknown_keys(config, {"token_url", "client_id", "audience", "auth_method", *extra_keys})
    auth_method = config.get("auth_method", OAUTH2_AUTH_METHODS[0])
    if auth_method not in OAUTH2_AUTH_METHODS:
        raise _config_error(f"config.auth_method must be one of {', '.join(OAUTH2_AUTH_METHODS)}.")
    result = {
        "token_url": _outbound_url(config.get("token_url"), "token_url"),
        "client_id": _text(config, "client_id", max_length=MAX_CLIENT_ID_LENGTH, required=True),
        "auth_method": auth_method,
    }
    audience = _text(config, "audience", max_length=MAX_AUDIENCE_LENGTH)
    if audience is not None:
        result["audience"] = audience
    return result


def _oauth2_client_credentials_config(config: dict, name: str) -> dict:
    """`{token_url, client_id, audience?, auth_method?}` (auth_method default client_secret_basic)."""
    return _oauth2_config(config, set())


def _oauth2_token_exchange_config(config: dict, name: str) -> dict:
    """The client-credentials fields plus `{resource?, requested_token_type?}` (RFC 8693)."""
    result = _oauth2_config(config, {"resource", "requested_token_type"})
    resource = _text(config, "resource", max_length=MAX_AUDIENCE_LENGTH)
    if resource is not None:
        parts = urlsplit(resource)
        if not parts.scheme or not parts.netloc or parts.fragment or "#" in resource:
            raise _config_error("config.resource must be an absolute URI without a fragment (RFC 8707).")
        result["resource"] = resource
    requested = config.get("requested_token_type", TOKEN_TYPE_ACCESS_TOKEN)
    if not isinstance(requested, str) or not _TOKEN_TYPE_URN.fullmatch(requested):
        raise _config_error("config.requested_token_type must be a token type URN (RFC 8693 §3).")
    result["requested_token_type"] = requested
    return result


def _client_secret(secret: Any) -> PreparedSecret:
    """An OAuth 2.0 client secret: printable text, sent to the token endpoint only."""
    if not isinstance(secret, str) or not secret.strip() or len(secret) > MAX_CLIENT_SECRET_LENGTH:
        raise _secret_error(
            f"The client secret must be a string of 1 to {MAX_CLIENT_SECRET_LENGTH} characters, not only spaces."
        )
    if not secret.isprintable():
        raise _secret_error("The client secret must be printable text (no line breaks or control characters).")
    return PreparedSecret(secret.encode())


# --- aws_sts -------------------------------------------------------------------------------------

AWS_POLICY_VERSION = "2012-10-17"
MAX_AWS_SESSION_POLICY_CHARS = 2048  # AWS's limit on the plaintext of an AssumeRole session policy
MAX_AWS_SCOPES = 100
MAX_AWS_STATEMENTS_PER_SCOPE = 20
MAX_AWS_LIST_ITEMS = 100
MAX_AWS_CONDITION_VALUE_LENGTH = 1024
MAX_AWS_ROLE_ARN_LENGTH = 2048
_AWS_ROLE_ARN = re.compile(
    r"arn:aws(?:-[a-z]+)*:iam::[0-9]{12}:role/(?:[\x21-\x7e]{1,510}/)?[\w+=,.@-]{1,64}", re.ASCII
)
_AWS_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}")
_AWS_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}", re.ASCII)
_AWS_ACCESS_KEY_ID = re.compile(r"[A-Za-z0-9]{16,128}")
_AWS_SECRET_ACCESS_KEY = re.compile(r"[A-Za-z0-9/+=]{16,128}")
_AWS_STATEMENT_KEYS = frozenset({"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"})
_AWS_SID = re.compile(r"[A-Za-z0-9]{1,100}")
_AWS_ACTION = re.compile(r"\*|[a-z0-9-]{1,64}:[A-Za-z0-9*?]{1,128}")
_AWS_RESOURCE = re.compile(r"\*|arn:[\x21-\x7e]{1,2044}")
_AWS_CONDITION_OPERATOR = re.compile(r"(?:ForAllValues:|ForAnyValue:)?[A-Za-z]{2,64}")
_AWS_CONDITION_KEY = re.compile(r"[\x21-\x7e]{1,256}")


def aws_session_policy(statements: list[dict]) -> str:
    """The session policy document sent to AssumeRole: compact JSON, the form AWS's 2048-character limit counts."""
    document = {"Version": AWS_POLICY_VERSION, "Statement": statements}
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


def _aws_sts_config(config: dict, name: str) -> dict:
    """`{role_arn, region, scope_policies, endpoint_url?, external_id?}`.

    `scope_policies` maps each scope to the IAM statements of its session policy (a list of
    statements, or a policy document). A credential for some scopes gets the union of their
    statements, so it can never do more than its scopes allow, nor more than the role allows.
    """
    _no_unknown_keys(config, {"role_arn", "region", "scope_policies", "endpoint_url", "external_id"})
    role_arn = config.get("role_arn")
    if not (
        isinstance(role_arn, str) and len(role_arn) <= MAX_AWS_ROLE_ARN_LENGTH and _AWS_ROLE_ARN.fullmatch(role_arn)
    ):
        raise _config_error("config.role_arn must be an IAM role ARN, such as arn:aws:iam::123456789012:role/agents.")
    region = config.get("region")
    if not (isinstance(region, str) and _AWS_REGION.fullmatch(region)):
        raise _config_error("config.region must be an AWS region, such as eu-west-1.")
    result = {
        "role_arn": role_arn,
        "region": region,
        "scope_policies": _aws_scope_policies(config.get("scope_policies")),
    }
    if "endpoint_url" in config:
        result["endpoint_url"] = _outbound_url(config["endpoint_url"], "endpoint_url")
    if "external_id" in config:
        external_id = config["external_id"]
        if not (isinstance(external_id, str) and _AWS_EXTERNAL_ID.fullmatch(external_id)):
            raise _config_error("config.external_id must be 2 to 1224 characters of letters, digits and _+=,.@:/-.")
        result["external_id"] = external_id
    if len(json.dumps(result)) > MAX_CONFIG_BYTES:
        raise _config_error(f"The config is larger than {MAX_CONFIG_BYTES} bytes.")
    return result


def _aws_scope_policies(value: Any) -> dict[str, list[dict]]:
    if not isinstance(value, dict) or not 0 < len(value) <= MAX_AWS_SCOPES:
        raise _config_error(
            f"config.scope_policies must map 1 to {MAX_AWS_SCOPES} scopes to their IAM policy statements."
        )
    policies = {}
    for scope, statements in value.items():
        if len(scope) > scope_rules.MAX_SCOPE_LENGTH or not scope_rules.SCOPE.fullmatch(scope):
            raise _config_error(f"config.scope_policies: {scope[:50]!r} is not a scope (no wildcards).")
        where = f"config.scope_policies[{scope!r}]"
        policies[scope] = _aws_statements(statements, where)
        if len(aws_session_policy(policies[scope])) > MAX_AWS_SESSION_POLICY_CHARS:
            raise _config_error(
                f"{where}: the session policy is longer than AWS's {MAX_AWS_SESSION_POLICY_CHARS} characters."
            )
    return policies


def _aws_statements(value: Any, where: str) -> list[dict]:
    """A list of statements, or a policy document `{"Version": "2012-10-17", "Statement": ...}` (stored as its list)."""
    if isinstance(value, dict):
        if set(value) - {"Version", "Statement"} or value.get("Version", AWS_POLICY_VERSION) != AWS_POLICY_VERSION:
            raise _config_error(
                f"{where} must be a list of statements or a policy document (Version {AWS_POLICY_VERSION})."
            )
        value = value.get("Statement")
        value = [value] if isinstance(value, dict) else value
    if not isinstance(value, list) or not 0 < len(value) <= MAX_AWS_STATEMENTS_PER_SCOPE:
        raise _config_error(f"{where} must hold 1 to {MAX_AWS_STATEMENTS_PER_SCOPE} IAM policy statements.")
    return [_aws_statement(statement, f"{where}[{index}]") for index, statement in enumerate(value)]


def _aws_statement(statement: Any, where: str) -> dict:
    """One identity-policy statement: Effect, Action or NotAction, Resource or NotResource, Sid?, Condition?."""
    if not isinstance(statement, dict):
        raise _config_error(f"{where} must be an IAM policy statement (a JSON object).")
    unknown = sorted(set(statement) - _AWS_STATEMENT_KEYS)
    if unknown:
        keys = ", ".join(repr(key[:50]) for key in unknown)
        raise _config_error(f"{where} has keys a session policy statement cannot have: {keys}.")
    if statement.get("Effect") not in ("Allow", "Deny"):
        raise _config_error(f"{where}.Effect must be Allow or Deny.")
    result: dict[str, Any] = {"Effect": statement["Effect"]}
    if "Sid" in statement:
        if not (isinstance(statement["Sid"], str) and _AWS_SID.fullmatch(statement["Sid"])):
            raise _config_error(f"{where}.Sid must be letters and digits only.")
        result["Sid"] = statement["Sid"]
    for key, negated, pattern, example in (
        ("Action", "NotAction", _AWS_ACTION, "actions such as s3:GetObject, or *"),
        ("Resource", "NotResource", _AWS_RESOURCE, "ARNs, or *"),
    ):
        present = [name for name in (key, negated) if name in statement]
        if len(present) != 1:
            raise _config_error(f"{where} must have exactly one of {key} and {negated}.")
        result[present[0]] = _aws_patterns(statement[present[0]], pattern, f"{where}.{present[0]}", example)
    if "Condition" in statement:
        result["Condition"] = _aws_condition(statement["Condition"], f"{where}.Condition")
    return result


def _aws_patterns(value: Any, pattern: re.Pattern, where: str, example: str) -> str | list[str]:
    items = value if isinstance(value, list) else [value]
    valid = 0 < len(items) <= MAX_AWS_LIST_ITEMS and all(
        isinstance(item, str) and pattern.fullmatch(item) for item in items
    )
    if not valid:
        raise _config_error(f"{where} must be one or a list of {example}.")
    return value


def _aws_condition(value: Any, where: str) -> dict:
    """`{operator: {condition key: value or [values]}}`, values being strings, numbers or booleans."""
    shape = f"{where} must map condition operators to objects of condition key → value or list of values."
    if not isinstance(value, dict) or not 0 < len(value) <= MAX_AWS_LIST_ITEMS:
        raise _config_error(shape)
    for operator, tests in value.items():
        if not _AWS_CONDITION_OPERATOR.fullmatch(operator) or not isinstance(tests, dict) or not tests:
            raise _config_error(shape)
        for key, expected in tests.items():
            items = expected if isinstance(expected, list) else [expected]
            if not _AWS_CONDITION_KEY.fullmatch(key) or not 0 < len(items) <= MAX_AWS_LIST_ITEMS:
                raise _config_error(shape)
            for item in items:
                text = isinstance(item, str) and len(item) <= MAX_AWS_CONDITION_VALUE_LENGTH and item.isprintable()
                if not (text or isinstance(item, bool | int)):
                    raise _config_error(shape)
    return value


def _aws_sts_secret(secret: Any) -> PreparedSecret:
    """The access key pair keyward calls STS with: `{"access_key_id", "secret_access_key"}` (an object or its JSON)."""
    shape = 'The secret must be a JSON object {"access_key_id": ..., "secret_access_key": ...}.'
    if isinstance(secret, str):
        if len(secret) > MAX_SECRET_BYTES:
            raise _secret_error(f"The secret is larger than {MAX_SECRET_BYTES} bytes.")
        try:
            secret = json.loads(secret)
        except (ValueError, RecursionError):
            raise _secret_error(shape) from None
    if not isinstance(secret, dict) or set(secret) != {"access_key_id", "secret_access_key"}:
        raise _secret_error(shape)
    access_key_id, secret_access_key = secret["access_key_id"], secret["secret_access_key"]
    if not (isinstance(access_key_id, str) and _AWS_ACCESS_KEY_ID.fullmatch(access_key_id)):
        raise _secret_error("secret.access_key_id must be an AWS access key id (16 to 128 letters and digits).")
    if not (isinstance(secret_access_key, str) and _AWS_SECRET_ACCESS_KEY.fullmatch(secret_access_key)):
        raise _secret_error(
            "secret.secret_access_key must be an AWS secret access key (16 to 128 of A-Z a-z 0-9 / + =)."
        )
    plaintext = json.dumps(
        {"access_key_id": access_key_id, "secret_access_key": secret_access_key}, separators=(",", ":"), sort_keys=True
    )
    return PreparedSecret(plaintext.encode())


KIND_RULES: dict[str, KindRules] = {
    ProviderKind.KEYWARD_JWT: KindRules(config=_keyward_jwt_config, secret=None),
    ProviderKind.STATIC: KindRules(config=_static_config, secret=_static_secret, scopes_from_secret=True),
    ProviderKind.GITHUB_APP: KindRules(config=_github_app_config, secret=_github_app_secret),
    ProviderKind.AWS_STS: KindRules(config=_aws_sts_config, secret=_aws_sts_secret),
    ProviderKind.OAUTH2_CLIENT_CREDENTIALS: KindRules(config=_oauth2_client_credentials_config, secret=_client_secret),
    ProviderKind.OAUTH2_TOKEN_EXCHANGE: KindRules(config=_oauth2_token_exchange_config, secret=_client_secret),
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
    _check_plain_json(config, "config", MAX_CONFIG_DEPTH)
    if len(json.dumps(config)) > MAX_CONFIG_BYTES:
        raise _config_error(f"The config is larger than {MAX_CONFIG_BYTES} bytes.")
    return rules_for(kind).config(config, name)


def prepare_secret(kind: str, secret: Any) -> PreparedSecret:
    rules = rules_for(kind)
    if rules.secret is None:
        raise _secret_error(f"{kind} providers take no secret: keyward signs their credentials with its own key.")
    return rules.secret(secret)
