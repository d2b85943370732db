"""Fuzz a live keyward with schemathesis against its own /v1/schema, every check on (scripts/schemathesis).

Starts what production runs (gunicorn with docker/gunicorn.conf.py, PostgreSQL, Redis) on free
127.0.0.1 ports: a database it creates and drops, its own redis-server. Dev mode stays on for one
reason: the built-in dev IdP, which signs the end-user token POST /v1/credentials needs (a real IdP
would need an https JWKS endpoint). Seeds an org (scripts/schemathesis_seed.py) and runs
schemathesis with a fixed seed and a fixed number of examples per operation, so a run is
reproducible and bounded. Exits non-zero on any failure: a 5xx, an undocumented status, header or
content type, a body the schema does not describe, valid input refused or invalid input accepted.

Environment: KEYWARD_SCHEMATHESIS_DATABASE_URL (a PostgreSQL URL; its database is created and
dropped; default postgres://postgres@127.0.0.1:5432/keyward_schemathesis), SCHEMATHESIS_MAX_EXAMPLES
(default 40), SCHEMATHESIS_SEED (default 20260504), SCHEMATHESIS_WORKERS (default 2), SCHEMATHESIS_REPORT
(where to keep the JSON report; by default it goes with the run's temporary directory).
"""

import base64
import collections
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "scripts" / "schemathesis.toml"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/keyward_schemathesis"
STARTUP_SECONDS = 30
# docker/gunicorn.conf.py's access log: `… "METHOD /path HTTP/1.1" STATUS …`.
ACCESS_LINE = re.compile(r'"([A-Z]+ \S+) HTTP/[0-9.]+" ([0-9]{3}) ')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(ready, what: str) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.2)
    raise SystemExit(f"{what} did not come up within {STARTUP_SECONDS} s")


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own 127.0.0.1 server
            return response.status == 200
    except OSError:
        return False


def start(stack: ExitStack, command: list[str], env: dict, log: Path) -> subprocess.Popen:
    output = stack.enter_context(log.open("w"))
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)  # noqa: S603

    def stop() -> None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    stack.callback(stop)
    return process


def own_database(stack: ExitStack, url: str) -> None:
    """Create the run's database (dropping a leftover one) and drop it when the run ends."""
    server, name = url.rsplit("/", 1)

    def run(statement: sql.Composed) -> None:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
            connection.execute(statement)

    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    run(drop)
    run(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    stack.callback(run, drop)


def manage(env: dict, *args: str) -> str:
    done = subprocess.run(  # noqa: S603
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def main() -> int:
    # A stopped run (CI timeout, ^C) still stops gunicorn and redis-server and drops its database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    database_url = os.environ.get("KEYWARD_SCHEMATHESIS_DATABASE_URL", DEFAULT_DATABASE_URL)
    max_examples = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "40")
    seed = os.environ.get("SCHEMATHESIS_SEED", "20260504")
    workers = os.environ.get("SCHEMATHESIS_WORKERS", "2")
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="keyward-schemathesis-"))
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        web_port, redis_port = free_port(), free_port()
        base_url = f"http://127.0.0.1:{web_port}"
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("KEYWARD_") and key != "DJANGO_SETTINGS_MODULE"
        }
        env.update(
            DJANGO_SETTINGS_MODULE="keyward.settings",
            KEYWARD_DEV_MODE="1",
            KEYWARD_DATABASE_URL=database_url,
            KEYWARD_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
            KEYWARD_SECRET_KEY=secrets.token_urlsafe(50),
            KEYWARD_MASTER_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
            KEYWARD_ISSUER=base_url,
            KEYWARD_ALLOW_PRIVATE_URLS="1",
            KEYWARD_VAR_DIR=str(work / "var"),
            KEYWARD_EMAIL_FILE_PATH=str(work / "mail"),
            KEYWARD_LOG_LEVEL="WARNING",
            # One address and one agent send thousands of requests here, most of them refused: the
            # broker's limits (tested on their own in tests/security/test_rate_limits.py) would
            # otherwise answer 429 to most of the run and leave the logic behind them untested.
            **dict.fromkeys(
                (
                    "KEYWARD_BROKER_UNPROVEN_PER_MINUTE",
                    "KEYWARD_BROKER_UNPROVEN_BURST",
                    "KEYWARD_BROKER_AGENT_RATE_PER_MINUTE",
                    "KEYWARD_BROKER_AGENT_BURST",
                    "KEYWARD_BROKER_END_USER_RATE_PER_MINUTE",
                    "KEYWARD_BROKER_END_USER_BURST",
                    "KEYWARD_BROKER_MAX_OUTSTANDING_PER_AGENT",
                    "KEYWARD_INTROSPECTION_RATE_PER_MINUTE",
                    "KEYWARD_INTROSPECTION_BURST",
                ),
                "1000000",
            ),
        )

        start(
            stack,
            ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
            env,
            work / "redis.log",
        )
        own_database(stack, database_url)
        manage(env, "manage.py", "migrate", "--noinput")
        seeded = json.loads(manage(env, "scripts/schemathesis_seed.py"))

        gunicorn = [sys.executable, "-m", "gunicorn", "-c", "docker/gunicorn.conf.py", "keyward.wsgi"]
        # Sized for a 2-core CI machine; no control socket, which other gunicorns on the machine would share.
        gunicorn += ["--bind", f"127.0.0.1:{web_port}", "--workers", "2", "--threads", "4", "--no-control-socket"]
        start(stack, gunicorn, env, work / "gunicorn.log")
        wait_until(lambda: answers(f"{base_url}/healthz"), "gunicorn")

        fuzz_env = {
            **env,
            "KEYWARD_FUZZ_SESSION": seeded["session"],
            "KEYWARD_FUZZ_USER_TOKEN": seeded["user_token"],
            "KEYWARD_FUZZ_INTROSPECTION_KEY": seeded["introspection_key"],
        }
        report = Path(os.environ.get("SCHEMATHESIS_REPORT", work / "report.json"))
        command = [
            str(Path(sys.executable).with_name("schemathesis")),
            "--config-file",
            str(CONFIG),
            "run",
            f"{base_url}/v1/schema",
            "--checks",
            "all",
            "--max-examples",
            max_examples,
            "--seed",
            seed,
            "--workers",
            workers,
            "--generation-database",
            "none",
            "--report",
            "json",
            "--report-json-path",
            str(report),
            "--no-color",
            *sys.argv[1:],
        ]
        print(f"schemathesis: {base_url}, {max_examples} examples per operation, seed {seed}", flush=True)
        started = time.monotonic()
        result = subprocess.run(command, cwd=ROOT, env=fuzz_env, check=False)  # noqa: S603
        print(f"schemathesis finished in {time.monotonic() - started:.0f} s with exit code {result.returncode}")
        print(f"keyward answered: {answer_counts(work / 'gunicorn.log')}")
        print(f"of which POST /v1/credentials: {answer_counts(work / 'gunicorn.log', 'POST /v1/credentials')}")
        if result.returncode != 0:
            print(f"--- keyward's log without access lines (last 200) ---\n{server_errors(work / 'gunicorn.log')}")
        return result.returncode


def answer_counts(log: Path, request: str | None = None) -> str:
    """Statuses in the access log (of one `METHOD /path` if given), e.g. `200 x 812, 400 x 2710`."""
    counts = collections.Counter(
        match.group(2)
        for match in map(ACCESS_LINE.search, log.read_text(errors="replace").splitlines())
        if match and request in (None, match.group(1))
    )
    return ", ".join(f"{status} x {count}" for status, count in sorted(counts.items())) or "nothing"


def server_errors(log: Path, lines: int = 200) -> str:
    """What keyward logged (tracebacks of 500s included) without gunicorn's access lines."""
    kept = [line for line in log.read_text(errors="replace").splitlines() if not line.startswith("127.0.0.1 [")]
    return "\n".join(kept[-lines:])


if __name__ == "__main__":
    sys.exit(main())
