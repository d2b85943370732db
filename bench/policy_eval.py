"""Benchmark: policy evaluation (`keyward.policies.engine.evaluate`) in an org with 10,000 rules.

    python bench/policy_eval.py [--rules 10000] [--matching 300] [--evaluations 2000]

Runs on the configured database engine without touching its data: with KEYWARD_DATABASE_URL set
(e.g. PostgreSQL) it creates and drops a throwaway test database on that server; without it, a
throwaway SQLite file in a temporary directory (SQLite is the default engine).

The org holds a realistic mix of rules across many agents, providers, scopes and environments,
plus a few hundred that match the probe request at every specificity. The engine should touch
only the probe's candidates (one indexed query per scope); a naive scan, shown for contrast,
loads every rule of the org.
"""

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = {"agent": "invoice-bot", "provider": "stripe", "environment": "prod"}
PROBE_SCOPE = "charges:refunds:write"
ALLOWED_SCOPES = ["charges:read", "refunds:read"]  # explicitly allowed, so a multi-scope probe reads every scope
RESOURCES = ["charges", "refunds", "customers", "invoices", "payouts", "repos", "issues", "buckets", "objects", "users"]
ACTIONS = ["read", "write", "create", "delete", "list"]
ENVIRONMENTS = ["prod", "staging", "dev", "qa", "eu-prod", "us-prod"]
CONDITIONS = [
    {"source_cidrs": ["10.0.0.0/8", "2001:db8::/32"]},
    {"time_window": {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00", "tz": "UTC"}},
]


def configure_django(workdir: Path) -> tuple[str, Callable[[], None]]:
    """Load keyward's settings on a throwaway database; returns its description and how to drop it."""
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "keyward.settings"
    os.environ["KEYWARD_VAR_DIR"] = str(workdir)
    os.environ.setdefault("KEYWARD_DEV_MODE", "1")
    configured = bool(os.environ.get("KEYWARD_DATABASE_URL"))
    if not configured:
        os.environ["KEYWARD_DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    if not configured:
        call_command("migrate", verbosity=0)
        return f"sqlite {connection.Database.sqlite_version} (throwaway file in {workdir})", lambda: None
    configured_name = connection.settings_dict["NAME"]
    name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    host = connection.settings_dict.get("HOST") or "local socket"
    description = f"{connection.vendor} {connection.Database.__name__} (throwaway database {name} on {host})"
    return description, lambda: connection.creation.destroy_test_db(configured_name, verbosity=0)


def random_rule(chooser: random.Random, agents: list[str], providers: list[str]) -> dict:
    """One rule of the background mix: mostly specific, some wildcards, a few with conditions."""
    resource, action = chooser.choice(RESOURCES), chooser.choice(ACTIONS)
    scope = chooser.choices(
        ["", f"{resource}:*", f"{resource}:{action}", f"{resource}:{chooser.choice(RESOURCES)}:{action}"],
        weights=[15, 25, 50, 10],
    )[0]
    return {
        "agent": chooser.choice(agents) if chooser.random() < 0.75 else "",
        "provider": chooser.choice(providers) if chooser.random() < 0.9 else "",
        "scope": scope,
        "environment": chooser.choice(ENVIRONMENTS) if chooser.random() < 0.6 else "",
        "effect": chooser.choices(["allow", "require_approval", "deny"], weights=[60, 15, 25])[0],
        "conditions": chooser.choice(CONDITIONS) if chooser.random() < 0.1 else {},
    }


def probe_rule(chooser: random.Random) -> dict:
    """A rule that matches the probe's fields at a random specificity (conditions may still fail)."""
    from keyward import scopes

    patterns = [pattern for pattern in scopes.wildcard_patterns(PROBE_SCOPE) if pattern != "*"] + [""]
    return {
        "agent": chooser.choice([PROBE["agent"], ""]),
        "provider": chooser.choice([PROBE["provider"], ""]),
        "scope": chooser.choice(patterns),
        "environment": chooser.choice([PROBE["environment"], ""]),
        "effect": chooser.choice(["allow", "require_approval", "deny"]),
        "conditions": chooser.choice([{}, {}, *CONDITIONS]),
    }


def build_org(total: int, matching: int):
    from django.db import connection

    from keyward.policies.models import Policy
    from keyward.tenancy.models import Org

    chooser = random.Random(4)  # noqa: S311 - reproducible test data, not security
    org = Org.objects.create(name="Bench policies", slug="bench-policies")
    agents = [f"agent-{n:03d}" for n in range(300)]
    providers = [f"provider-{n:02d}" for n in range(40)] + ["stripe", "github", "aws"]
    rows = [random_rule(chooser, agents, providers) for _ in range(total - matching)]
    rows += [probe_rule(chooser) for _ in range(matching - len(ALLOWED_SCOPES))]
    rows += [{**PROBE, "scope": scope, "effect": "allow"} for scope in ALLOWED_SCOPES]
    chooser.shuffle(rows)
    policies = []
    for fields in rows:
        policy = Policy(org=org, **fields)
        policy.set_precedence()
        policies.append(policy)
    Policy.objects.bulk_create(policies, batch_size=2_000)
    with connection.cursor() as cursor:  # planner statistics, as autovacuum would gather them after a bulk load
        cursor.execute(f"ANALYZE {Policy._meta.db_table}")
    return org


def naive_scan(org, scope: str):
    """What a Python scan would do: load every rule of the org and filter it."""
    from keyward import scopes
    from keyward.policies.models import Policy

    rules = list(Policy.objects.filter(org=org))
    matching = [
        rule
        for rule in rules
        if rule.agent in ("", PROBE["agent"])
        and rule.provider in ("", PROBE["provider"])
        and rule.environment in ("", PROBE["environment"])
        and (not rule.scope or scopes.matches(rule.scope, scope))
    ]
    return len(rules), len(matching)


def timed(work: Callable[[], object], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        samples.append((time.perf_counter() - started) * 1e6)
    return samples


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return f"{statistics.fmean(samples):>9.0f}{statistics.median(samples):>9.0f}{p95:>9.0f}"


def _candidate_count(org, request: dict, scope: str) -> int:
    """Rules the candidate query selects for one scope (the engine reads a batch of them, in order)."""
    from keyward.policies import engine

    fields = {name: request[name] for name in ("agent", "provider", "environment")}
    return engine.candidates(org, **fields, scope=scope).count()


def run(total: int, matching: int, evaluations: int) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from keyward.policies import engine

    started = time.perf_counter()
    org = build_org(total, matching)
    print(f"inserted {total:,} rules ({matching} shaped to match the probe) in {time.perf_counter() - started:.1f}s")

    loaded, candidates = naive_scan(org, PROBE_SCOPE)
    decision = engine.evaluate(org, **PROBE, scopes=[PROBE_SCOPE], ip="10.1.2.3")
    print(f"probe: {PROBE['agent']} / {PROBE['provider']} / {PROBE_SCOPE} / {PROBE['environment']} from 10.1.2.3")
    print(f"  decision: {decision.effect} by rule #{decision.policy_id}: {decision.reason}")
    print(f"  rules in the org: {total:,}; rules whose fields match the probe: {candidates}")
    print(f"  contrast: a naive Python scan loads and checks all {loaded:,} rules on every request")

    cases = {
        "probe (1 scope)": {"scopes": [PROBE_SCOPE], "ip": "10.1.2.3"},
        "probe, no ip (cidr rules fail)": {"scopes": [PROBE_SCOPE]},
        "probe, 3 scopes": {"scopes": [*ALLOWED_SCOPES, PROBE_SCOPE], "ip": "10.1.2.3"},
        "unmatched provider (default deny)": {"scopes": ["objects:read"], "provider": "nobody"},
    }
    print()
    print(f"{'evaluate() case':<36}{'queries':>8}{'candidates':>11}{'mean µs':>9}{'p50 µs':>9}{'p95 µs':>9}")
    for title, case in cases.items():
        kwargs = {**PROBE, **case}

        def work(kwargs=kwargs):
            return engine.evaluate(org, **kwargs)

        for _ in range(50):  # warm-up: imports, statement caches, the database's buffer cache
            work()
        with CaptureQueriesContext(connection) as captured:
            work()
        rows = sum(_candidate_count(org, kwargs, scope) for scope in kwargs["scopes"])
        print(f"{title:<36}{len(captured):>8}{rows:>11}{summary(timed(work, evaluations))}")

    naive = timed(lambda: naive_scan(org, PROBE_SCOPE), max(5, evaluations // 100))
    print(f"{'contrast: naive scan of every rule':<36}{1:>8}{total:>11,}{summary(naive)}")
    print()
    print("candidate query plan:")
    query = engine.candidates(org, **PROBE, scope=PROBE_SCOPE)[: engine.FIRST_BATCH]
    for line in query.explain().splitlines():
        print(f"  {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=10_000, help="rules in the org (default 10000)")
    parser.add_argument("--matching", type=int, default=300, help="rules shaped to match the probe (default 300)")
    parser.add_argument("--evaluations", type=int, default=2_000, help="timed evaluations per case (default 2000)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="keyward-bench-") as workdir:
        database, drop_database = configure_django(Path(workdir))
        print(f"database: {database}")
        try:
            run(args.rules, args.matching, args.evaluations)
        finally:
            drop_database()


if __name__ == "__main__":
    main()
