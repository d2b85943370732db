"""Benchmark: peak Python memory of GET /v1/audit/export for 5,000 vs 50,000 rows.

Runs against a throwaway SQLite database in a temporary directory (never the configured one):
    python bench/audit_export.py [--rows 50000] [--small 5000]

Streaming should keep the peak flat as the row count grows tenfold; a materialised list of the
same rows is measured alongside for contrast.
"""

import argparse
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BULK_BATCH = 5_000


def configure_django(workdir: Path) -> None:
    """Point keyward at a fresh SQLite file under `workdir`, in dev mode, before Django loads."""
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "keyward.settings"
    os.environ["KEYWARD_VAR_DIR"] = str(workdir)
    os.environ["KEYWARD_DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    os.environ["KEYWARD_DEV_MODE"] = "1"
    os.environ.pop("KEYWARD_REDIS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def bulk_chain(org, count: int) -> None:
    """A valid hash chain of `count` rows, inserted in batches (faster than one writer call per row)."""
    from django.utils import timezone

    from keyward.audit.chain import compute_hash
    from keyward.audit.models import GENESIS_HASH, AuditChain, AuditEvent, chain_key

    prev_hash, now, batch = GENESIS_HASH, timezone.now(), []
    for seq in range(1, count + 1):
        event = AuditEvent(
            org=org,
            seq=seq,
            created_at=now,
            event_type="credential.issued",
            outcome="success",
            reason_code="policy_allow",
            actor_type="agent",
            actor_id="42",
            actor_name="deploy-bot",
            end_user=f"user{seq % 500}@example.com",
            agent="deploy-bot",
            delegation_chain=["planner", "deploy-bot"],
            provider="github",
            scope="repo:read issues:write",
            environment="prod",
            credential_jti=f"jti-{seq:08d}",
            request_id=f"req_{seq:032x}",
            ip="203.0.113.7",
            detail={"ttl_seconds": 300, "rule_id": 7},
            prev_hash=prev_hash,
        )
        event.hash = prev_hash = compute_hash(event)
        batch.append(event)
        if len(batch) == BULK_BATCH:
            AuditEvent.objects.bulk_create(batch)
            batch = []
    AuditEvent.objects.bulk_create(batch)
    AuditChain.objects.create(key=chain_key(org), last_seq=count, last_hash=prev_hash)


def measure(work: Callable[[], int]) -> tuple[int, int, float]:
    """(peak bytes traced while `work` runs, what it returned, seconds of an untraced run).

    Timed untraced, since tracing slows allocation-heavy code several times over.
    """
    gc.collect()
    started = time.perf_counter()
    work()
    elapsed = time.perf_counter() - started
    gc.collect()
    tracemalloc.start()
    result = work()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, result, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000, help="rows in the large org (default 50000)")
    parser.add_argument("--small", type=int, default=5_000, help="rows in the small org (default 5000)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="keyward-bench-") as workdir:
        configure_django(Path(workdir))
        run(args.small, args.rows)


def run(small_rows: int, large_rows: int) -> None:
    from django.test import Client

    from keyward.accounts.models import Account, Role
    from keyward.accounts.services import start_session
    from keyward.audit.models import AuditEvent
    from keyward.audit.services import EXPORT_MAX_ROWS, verify_chain
    from keyward.tenancy.models import Org

    orgs, clients = {}, {}
    for label, count in (("small", small_rows), ("large", large_rows)):
        org = Org.objects.create(name=f"Bench {label}", slug=f"bench-{label}")
        owner = Account.objects.create_account(email=f"{label}@bench.example", password=None, org=org, role=Role.VIEWER)
        started = time.perf_counter()
        bulk_chain(org, count)
        print(f"inserted {count:>6,} rows for {label} org in {time.perf_counter() - started:.1f}s")
        orgs[label] = org
        token = start_session(owner, ip="127.0.0.1", otp_verified=False).token
        clients[label] = Client(HTTP_AUTHORIZATION=f"Bearer {token}")

    def export(label: str, fmt: str) -> Callable[[], int]:
        def consume() -> int:
            response = clients[label].get(f"/v1/audit/export?format={fmt}")
            assert response.status_code == 200, response.status_code
            assert "X-Keyward-Next-Since" not in response or large_rows > EXPORT_MAX_ROWS
            return sum(len(chunk) for chunk in response.streaming_content)

        return consume

    def materialised(label: str) -> Callable[[], int]:
        def build() -> int:
            rows = list(AuditEvent.objects.filter(org=orgs[label]).values())
            return len(rows)

        return build

    def verify(label: str) -> Callable[[], int]:
        return lambda: verify_chain(orgs[label]).rows_checked

    export("small", "json")()  # warm-up: first-request imports and URL resolution are not the export's cost
    print()
    print(f"{'measurement':<38}{'rows':>8}{'peak traced memory':>22}{'time':>9}")
    for title, make in (
        ("export format=json (streamed)", lambda label: export(label, "json")),
        ("export format=csv (streamed)", lambda label: export(label, "csv")),
        ("verify_chain (iterator)", verify),
        ("contrast: list(queryset.values())", materialised),
    ):
        for label, count in (("small", small_rows), ("large", large_rows)):
            peak, result, elapsed = measure(make(label))
            size = f" ({result / 1e6:.1f} MB body)" if "export" in title else ""
            print(f"{title:<38}{count:>8,}{peak / 1e6:>17.2f} MB{elapsed:>8.2f}s{size}")


if __name__ == "__main__":
    main()
