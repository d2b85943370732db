"""Benchmark: does SIEM streaming slow issuance? POST /v1/credentials latency in three setups.

    python bench/issuance_streaming.py [--requests 300]

1. no SIEM destination;
2. the org streams to a SIEM and the Celery broker (a redis-server the benchmark starts for itself
   on a free 127.0.0.1 port, and stops after) takes every wake-up task (no worker runs, so only
   the cost of queueing is on the request);
3. the same with the broker unreachable (a closed port): the first wake-up fails fast, then
   queueing pauses and the sweep is left to deliver later.

Each setup runs in its own process (Celery's broker is fixed at start-up) against a throwaway
SQLite file, in dev mode, with the demo org. Requests go through Django's test client, in process.
"""

import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from policy_eval import configure_django

SETUPS = ("no SIEM destination", "SIEM on, broker up", "SIEM on, broker down")
BROKER_DOWN = "redis://127.0.0.1:1/0"  # nothing listens on port 1: every connection is refused
SIEM_URL = "http://127.0.0.1:9/siem"  # never contacted: no worker runs in this benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="issuances per setup (default 300)")
    parser.add_argument("--setup", choices=SETUPS, help=argparse.SUPPRESS)  # one setup, in a child process
    args = parser.parse_args()
    if args.setup:
        print(json.dumps(measure(args.setup, args.requests)))
        return
    print(f"POST /v1/credentials, {args.requests} issuances per setup (after 20 warm-up requests)")
    print(f"{'setup':<24} {'mean ms':>8} {'p50 ms':>8} {'p95 ms':>8} {'queued':>7}")
    for setup in SETUPS:
        with broker_for(setup) as broker_url:
            result = run_child(setup, args.requests, broker_url)
        if result is None:
            continue
        print(f"{setup:<24} {result['mean']:>8.2f} {result['p50']:>8.2f} {result['p95']:>8.2f} {result['queued']:>7}")


@contextmanager
def broker_for(setup: str) -> Iterator[str | None]:
    """The broker URL a setup runs with; "broker up" gets a private redis-server, never a shared one."""
    if setup == "no SIEM destination":
        yield None
    elif setup == "SIEM on, broker down":
        yield BROKER_DOWN
    else:
        with private_redis() as url:
            yield url


@contextmanager
def private_redis() -> Iterator[str]:
    """A throwaway redis-server on a free 127.0.0.1 port: the benchmark counts what it queued there
    and then stops it, so it never reads or empties a Redis that holds anyone else's data."""
    if shutil.which("redis-server") is None:
        raise SystemExit("the benchmark needs redis-server on PATH")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        for _ in range(100):  # up to 10 s for it to listen
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        else:
            raise SystemExit("the private redis-server did not start")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


def run_child(setup: str, requests: int, broker_url: str | None) -> dict | None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("KEYWARD_")}
    if broker_url:
        env["KEYWARD_REDIS_URL"] = broker_url
    command = [sys.executable, __file__, "--setup", setup, "--requests", str(requests)]
    child = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)  # noqa: S603
    if child.returncode != 0:
        print(f"{setup:<24} failed: {child.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(child.stdout.strip().splitlines()[-1])


def measure(setup: str, requests: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="keyward-bench-") as workdir:
        os.environ["KEYWARD_LOG_LEVEL"] = "ERROR"  # a refused broker logs a warning per pause
        configure_django(Path(workdir))
        from django.test import Client

        from keyward.demo import DEMO_AGENT, seed_demo
        from keyward.idp.dev import issue_dev_user_token
        from keyward.siem import services as siem

        demo = seed_demo()
        if setup != "no SIEM destination":
            siem.set_destination(demo.org, url=SIEM_URL, secret=secrets.token_urlsafe(32), actor=demo.owner)
        token = issue_dev_user_token(demo.org, subject="alice@example.com", ttl_seconds=3600)
        client = Client(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_X_KEYWARD_AGENT=DEMO_AGENT)
        body = json.dumps({"provider": "stripe", "scope": "charges:read", "ttl": "5m"})

        def issue() -> float:
            started = time.perf_counter()
            response = client.post("/v1/credentials", body, content_type="application/json")
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise SystemExit(f"issuance failed: {response.status_code} {response.content[:200]!r}")
            return elapsed

        for _ in range(20):
            issue()
        samples = sorted(issue() for _ in range(requests))
        queued = queued_tasks() if setup == "SIEM on, broker up" else 0
        return {
            "mean": statistics.fmean(samples),
            "p50": samples[len(samples) // 2],
            "p95": samples[int(len(samples) * 0.95) - 1],
            "queued": queued,
        }


def queued_tasks() -> int:
    """How many wake-ups reached the broker (the private redis-server, which is thrown away after)."""
    import redis

    connection = redis.Redis.from_url(os.environ["KEYWARD_REDIS_URL"])
    return sum(connection.llen(queue) for queue in ("siem", "default", "notifications", "maintenance"))


if __name__ == "__main__":
    main()
