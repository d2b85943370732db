"""Benchmark: does SIEM streaming slow issuance? POST /v1/credentials latency in three setups.

    python bench/issuance_streaming.py [--requests 300]

1. no SIEM destination;
2. the org streams to a SIEM and the Celery broker (Redis on 127.0.0.1:6379, db 14) takes every
   wake-up task (no worker runs, so only the cost of queueing is on the request);
3. the same with the broker unreachable (a closed port): the first wake-up fails fast, then
   queueing pauses and the sweep is left to deliver later.

Each setup runs in its own process (Celery's broker is fixed at start-up) against a throwaway
SQLite file, in dev mode, with the demo org. Requests go through Django's test client, in process.
"""

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from policy_eval import configure_django

SETUPS = {
    "no SIEM destination": None,
    "SIEM on, broker up": "redis://127.0.0.1:6379/14",
    "SIEM on, broker down": "redis://127.0.0.1:1/0",
}
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
        result = run_child(setup, args.requests)
        if result is None:
            continue
        print(f"{setup:<24} {result['mean']:>8.2f} {result['p50']:>8.2f} {result['p95']:>8.2f} {result['queued']:>7}")


def run_child(setup: str, requests: int) -> dict | None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("KEYWARD_")}
    if SETUPS[setup]:
        env["KEYWARD_REDIS_URL"] = SETUPS[setup]
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
        if SETUPS[setup]:
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
    """How many wake-ups reached the broker (then empties its db, which only this benchmark uses)."""
    import redis

    connection = redis.Redis.from_url(SETUPS["SIEM on, broker up"])
    queued = sum(connection.llen(queue) for queue in ("siem", "default", "notifications", "maintenance"))
    connection.flushdb()
    return queued


if __name__ == "__main__":
    main()
