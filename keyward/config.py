"""Reading configuration from the environment, failing fast with the variable's name.

Settings import only this module, so a bad value stops start-up with one clear line
instead of surfacing later as an odd runtime error.
"""

import base64
import binascii
import os
import secrets
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


class ConfigError(ImproperlyConfigured):
    """A configuration value is missing or malformed; the message names the variable."""


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def env_bool(name: str, default: bool) -> bool:
    value = env_str(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    raise ConfigError(f"{name} must be one of 1/0, true/false, yes/no, on/off (got {value!r})")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = env_str(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be an integer (got {value!r})") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name} must be at least {minimum} (got {number})")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = env_str(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_secret(name: str) -> str | None:
    """Read NAME, or the file named by NAME_FILE (Docker/Kubernetes secrets); never both."""
    direct = env_str(name)
    file_path = env_str(f"{name}_FILE")
    if direct is not None and file_path is not None:
        raise ConfigError(f"set only one of {name} and {name}_FILE")
    if file_path is None:
        return direct
    try:
        content = Path(file_path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{name}_FILE: cannot read {file_path} ({exc.strerror})") from None
    if not content:
        raise ConfigError(f"{name}_FILE: {file_path} is empty")
    return content


def dev_secret(var_dir: Path, filename: str, generate) -> str:
    """Return a secret persisted under var/, creating it (mode 0600) on first use."""
    path = var_dir / filename
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    value = generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def new_secret_key() -> str:
    return secrets.token_urlsafe(50)


def new_master_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def decode_master_key(name: str, value: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{name} must be base64 (32 random bytes)") from None
    if len(raw) != 32:
        raise ConfigError(f"{name} must decode to exactly 32 bytes (got {len(raw)})")
    return raw


def database_from_url(name: str, url: str) -> dict:
    """Turn `postgres://user:pass@host:port/db?opt=v` or `sqlite:///path` into a DATABASES entry."""
    parts = urlsplit(url)
    if parts.scheme in {"postgres", "postgresql"}:
        database = unquote(parts.path.lstrip("/"))
        if not database:
            raise ConfigError(f"{name} must name a database, e.g. postgres://user@host:5432/keyward")
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"{name} has an invalid port") from None
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": database,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(port or ""),
            "OPTIONS": dict(parse_qsl(parts.query)),
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if not path or path == "/":
            raise ConfigError(f"{name} must name a file, e.g. sqlite:////abs/path/keyward.sqlite3")
        return sqlite_database(Path(path))
    raise ConfigError(f"{name} must start with postgres:// or sqlite:// (got {parts.scheme or 'nothing'}://)")


def sqlite_database(path: Path) -> dict:
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
    }


def validate_redis_url(name: str, url: str) -> str:
    if urlsplit(url).scheme not in {"redis", "rediss"}:
        raise ConfigError(f"{name} must start with redis:// or rediss://")
    return url


def validate_http_url(name: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        # Never echo the value: a webhook URL may carry a token in its path or query.
        raise ConfigError(f"{name} must be an absolute http(s) URL (scheme {parts.scheme or 'missing'!r})")
    return url.rstrip("/")
