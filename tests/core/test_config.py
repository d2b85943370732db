"""Configuration comes from the environment and fails fast, naming the variable."""

import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from keyward import config
from keyward.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
GOOD_MASTER = "dGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGVzLWxvbmchISE="
GOOD_SECRET = "s" * 60


def run_manage(env_overrides: dict, *args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWARD_") and k != "DJANGO_SETTINGS_MODULE"}
    env.update({"KEYWARD_VAR_DIR": str(tmp_path), **env_overrides})
    return subprocess.run(
        [sys.executable, "manage.py", *(args or ("check",))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


PRODUCTION = {
    "KEYWARD_DEV_MODE": "0",
    "KEYWARD_ISSUER": "https://keyward.example.com",
}


def test_missing_secret_key_stops_start_up_naming_the_variable(tmp_path):
    result = run_manage({**PRODUCTION, "KEYWARD_MASTER_KEY": GOOD_MASTER}, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "KEYWARD_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_master_key_stops_start_up_naming_the_variable(tmp_path):
    result = run_manage({**PRODUCTION, "KEYWARD_SECRET_KEY": GOOD_SECRET}, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "KEYWARD_MASTER_KEY" in result.stderr
    assert not list(tmp_path.iterdir()), "production mode must not generate secrets"


def test_production_env_with_secrets_starts(tmp_path):
    result = run_manage(
        {**PRODUCTION, "KEYWARD_SECRET_KEY": GOOD_SECRET, "KEYWARD_MASTER_KEY": GOOD_MASTER}, tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stderr


def test_dev_mode_generates_and_reuses_secrets(tmp_path):
    assert run_manage({}, tmp_path=tmp_path).returncode == 0
    first = (tmp_path / "master_key").read_text()
    assert oct((tmp_path / "master_key").stat().st_mode & 0o777) == "0o600"
    assert run_manage({}, tmp_path=tmp_path).returncode == 0
    assert (tmp_path / "master_key").read_text() == first
    assert len(config.decode_master_key("x", first.strip())) == 32


def test_secret_file_variants_are_read(tmp_path):
    (tmp_path / "sk").write_text(GOOD_SECRET + "\n")
    (tmp_path / "mk").write_text(GOOD_MASTER + "\n")
    result = run_manage(
        {
            **PRODUCTION,
            "KEYWARD_SECRET_KEY_FILE": str(tmp_path / "sk"),
            "KEYWARD_MASTER_KEY_FILE": str(tmp_path / "mk"),
        },
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KEYWARD_DEV_MODE": "maybe"}, "KEYWARD_DEV_MODE"),
        ({"KEYWARD_MASTER_KEY": "not base64!"}, "KEYWARD_MASTER_KEY"),
        ({"KEYWARD_MASTER_KEY": "c2hvcnQ="}, "KEYWARD_MASTER_KEY"),
        ({"KEYWARD_DATABASE_URL": "mysql://x/y", "KEYWARD_DEV_MODE": "1"}, "KEYWARD_DATABASE_URL"),
        ({"KEYWARD_REDIS_URL": "http://localhost"}, "KEYWARD_REDIS_URL"),
        ({"KEYWARD_ISSUER": "ftp://x"}, "KEYWARD_ISSUER"),
        ({**PRODUCTION, "KEYWARD_SECRET_KEY": "short", "KEYWARD_MASTER_KEY": GOOD_MASTER}, "KEYWARD_SECRET_KEY"),
        ({"KEYWARD_DEV_MODE": "0", "KEYWARD_ISSUER": "http://plain.example.com"}, "KEYWARD_ISSUER"),
        ({"KEYWARD_LOGIN_FAILURES_PER_ACCOUNT": "0"}, "KEYWARD_LOGIN_FAILURES_PER_ACCOUNT"),
    ],
)
def test_bad_values_name_the_variable(tmp_path, env, named):
    result = run_manage(env, tmp_path=tmp_path)
    assert result.returncode != 0
    assert named in result.stderr
    assert "Traceback" not in result.stderr


def test_env_secret_refuses_both_direct_and_file(monkeypatch, tmp_path):
    (tmp_path / "f").write_text("x")
    monkeypatch.setenv("KW_T", "a")
    monkeypatch.setenv("KW_T_FILE", str(tmp_path / "f"))
    with pytest.raises(ConfigError, match="KW_T and KW_T_FILE"):
        config.env_secret("KW_T")


def test_env_secret_names_an_unreadable_file(monkeypatch, tmp_path):
    monkeypatch.delenv("KW_T", raising=False)
    monkeypatch.setenv("KW_T_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="KW_T_FILE"):
        config.env_secret("KW_T")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p%40ss@db.internal:6543/keyward?sslmode=require", ("db.internal", "6543", "keyward", "p@ss")),
        ("postgresql://postgres@127.0.0.1/kw", ("127.0.0.1", "", "kw", "")),
    ],
)
def test_database_url_parsing(url, expected):
    parsed = config.database_from_url("KEYWARD_DATABASE_URL", url)
    assert (parsed["HOST"], parsed["PORT"], parsed["NAME"], parsed["PASSWORD"]) == expected
    assert parsed["ENGINE"] == "django.db.backends.postgresql"


def test_postgresql_connections_are_kept_and_health_checked():
    """Persistent connections, checked before each request reuses them: a restarted PostgreSQL or a
    terminated backend costs no request an error once it is back."""
    parsed = config.database_from_url("KEYWARD_DATABASE_URL", "postgres://u@db/keyward")
    assert parsed["CONN_HEALTH_CHECKS"] is True
    assert 0 < parsed["CONN_MAX_AGE"] <= 300


@pytest.mark.parametrize("url", ["postgres://host", "postgres://host:notaport/db", "sqlite://", "redis://x/0"])
def test_bad_database_urls_name_the_variable(url):
    with pytest.raises(ConfigError, match="KEYWARD_DATABASE_URL"):
        config.database_from_url("KEYWARD_DATABASE_URL", url)


CI_PRODUCTION = {
    "KEYWARD_DATABASE_URL": "postgres://postgres@127.0.0.1:5432/keyward_ci",
    "KEYWARD_REDIS_URL": "redis://127.0.0.1:6379/15",
    "KEYWARD_SECRET_KEY": "ci-like-" + "".join(chr(ord("a") + n % 26) + str(n % 10) for n in range(30)),
    "KEYWARD_MASTER_KEY": GOOD_MASTER,
    "KEYWARD_ISSUER": "https://keyward.example.com",
}


def deploy_check(env: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    return run_manage(env, "check", "--deploy", "--fail-level", "WARNING", tmp_path=tmp_path)


def trusted_hops(env: dict, tmp_path: Path) -> str:
    code = "from django.conf import settings; print(settings.KEYWARD_TRUSTED_PROXY_HOPS)"
    result = run_manage(env, "shell", "--no-imports", "-c", code, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_ci_production_environment_passes_the_deploy_checks(tmp_path):
    """.ci/run runs exactly this; none of keyward's warnings may fire for a sound production setup."""
    result = deploy_check(CI_PRODUCTION, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "keyward.W" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (CI_PRODUCTION, "1"),
        ({**CI_PRODUCTION, "KEYWARD_TRUSTED_PROXY_HOPS": "2"}, "2"),
        ({**CI_PRODUCTION, "KEYWARD_BEHIND_TLS_PROXY": "0"}, "0"),
        ({}, "0"),
    ],
    ids=["production-default", "explicit-hops", "no-proxy", "dev-mode"],
)
def test_behind_a_tls_proxy_the_client_is_one_hop_away_by_default(tmp_path, env, expected):
    """Trusting 0 hops behind a proxy makes every client the proxy's address: one throttle for all."""
    assert trusted_hops(env, tmp_path) == expected


@pytest.mark.parametrize(
    ("redis_url", "expected_ssl"),
    [
        ("redis://127.0.0.1:6379/15", "False"),
        ("rediss://redis.internal:6380/0", str({"ssl_cert_reqs": ssl.CERT_REQUIRED})),
    ],
    ids=["redis", "rediss"],
)
def test_celery_uses_the_patched_redis_transport_with_tls_kept_for_rediss(tmp_path, redis_url, expected_ssl):
    """The transport that survives a lost Redis (keyward.core.celery_redis); named by its path, it no
    longer takes TLS from the scheme, so rediss:// asks for TLS (with certificate checks) explicitly."""
    code = (
        "from keyward.celery import app; connection = app.connection_for_write(); "
        "print(connection.transport_cls, connection.ssl, type(connection.transport).__module__, sep='|')"
    )
    result = run_manage(
        {**CI_PRODUCTION, "KEYWARD_REDIS_URL": redis_url}, "shell", "--no-imports", "-c", code, tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stderr
    transport_path, ssl_options, module = result.stdout.strip().split("|")
    assert (transport_path, module) == ("keyward.core.celery_redis:Transport", "keyward.core.celery_redis")
    assert ssl_options == expected_ssl


@pytest.mark.parametrize(
    ("env", "warning"),
    [
        ({**CI_PRODUCTION, "KEYWARD_DEV_MODE": "1"}, "keyward.W001"),
        ({**CI_PRODUCTION, "KEYWARD_ALLOW_PRIVATE_URLS": "1"}, "keyward.W002"),
        ({**CI_PRODUCTION, "KEYWARD_TRUSTED_PROXY_HOPS": "0"}, "keyward.W003"),
        ({k: v for k, v in CI_PRODUCTION.items() if k != "KEYWARD_REDIS_URL"}, "keyward.W004"),
    ],
    ids=["dev-mode-on-postgresql", "private-urls-in-production", "proxy-with-zero-hops", "no-redis-in-production"],
)
def test_each_deploy_warning_fires_when_it_should(tmp_path, env, warning):
    result = deploy_check(env, tmp_path)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert warning in output
    assert {line for line in output.split() if line.startswith("(keyward.W")} == {f"({warning})"}


@pytest.mark.parametrize(
    "env",
    [
        {},  # dev mode on SQLite, private URLs allowed: a developer's machine
        {**CI_PRODUCTION, "KEYWARD_BEHIND_TLS_PROXY": "0", "KEYWARD_TRUSTED_PROXY_HOPS": "0"},
    ],
    ids=["dev-mode-on-sqlite", "no-proxy-zero-hops"],
)
def test_keyward_deploy_warnings_stay_quiet_otherwise(tmp_path, env):
    result = deploy_check(env, tmp_path)
    assert "keyward.W" not in result.stdout + result.stderr


def test_debug_logging_never_shows_outbound_urls(tmp_path):
    """At KEYWARD_LOG_LEVEL=DEBUG, urllib3 would log every request line, query string and all."""
    code = (
        "import threading, requests\n"
        "from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer\n"
        "class Ok(BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(204); self.end_headers()\n"
        "    def log_message(self, *args): pass\n"
        "server = ThreadingHTTPServer(('127.0.0.1', 0), Ok)\n"
        "threading.Thread(target=server.serve_forever, daemon=True).start()\n"
        "url = f'http://127.0.0.1:{server.server_port}/token?code=leaky-secret-123'\n"
        "print(requests.get(url, timeout=5).status_code)\n"
        "import logging; logging.getLogger('keyward.probe').debug('debug logging is on')\n"
        "server.shutdown()\n"
    )
    result = run_manage({"KEYWARD_LOG_LEVEL": "DEBUG"}, "shell", "--no-imports", "-c", code, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "204"
    assert "debug logging is on" in result.stderr  # DEBUG really is on
    assert "leaky-secret-123" not in result.stdout + result.stderr
