"""Benchmark: peak Python memory of the background audit export writer for 5,000 vs 50,000 rows.

Runs against a throwaway SQLite database and export directory in a temporary directory:
    python bench/audit_export_async.py [--rows 50000] [--small 5000]

The writer streams rows with `.iterator()` into a file (no row cap), so its peak should stay flat
as the row count grows tenfold.
"""

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from audit_export import bulk_chain, configure_django, measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000, help="rows in the large org (default 50000)")
    parser.add_argument("--small", type=int, default=5_000, help="rows in the small org (default 5000)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="keyward-bench-") as workdir:
        os.environ["KEYWARD_EXPORT_DIR"] = str(Path(workdir) / "exports")
        configure_django(Path(workdir))
        run(args.small, args.rows)


def run(small_rows: int, large_rows: int) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from keyward.audit import exports
    from keyward.audit.models import AuditExport, ExportStatus
    from keyward.audit.services import EXPORT_MAX_ROWS
    from keyward.tenancy.models import Org

    orgs = {}
    for label, count in (("small", small_rows), ("large", large_rows)):
        org = Org.objects.create(name=f"Bench {label}", slug=f"bench-{label}")
        started = time.perf_counter()
        bulk_chain(org, count)
        print(f"inserted {count:>6,} rows for {label} org in {time.perf_counter() - started:.1f}s")
        orgs[label] = org

    def write(label: str, fmt: str, count: int) -> Callable[[], int]:
        def run_writer() -> int:
            now = timezone.now()
            export = AuditExport.objects.create(
                id=exports.new_export_id(),
                org=orgs[label],
                format=fmt,
                since_seq=0,
                until_seq=count,
                created_at=now,
                expires_at=now + timedelta(hours=1),
            )
            assert exports.write_export(export.pk) == ExportStatus.DONE
            export.refresh_from_db()
            assert export.row_count == count, (export.row_count, count)
            return export.size_bytes

        return run_writer

    write("small", "json", small_rows)()  # warm-up: first-use imports are not the writer's cost
    print()
    print(f"(the synchronous GET /v1/audit/export stops at {EXPORT_MAX_ROWS:,} rows; this writer has no cap)")
    print(f"{'measurement':<38}{'rows':>8}{'peak traced memory':>22}{'time':>9}")
    for fmt in ("json", "csv"):
        for label, count in (("small", small_rows), ("large", large_rows)):
            peak, size, elapsed = measure(write(label, fmt, count))
            title = f"background export format={fmt}"
            print(f"{title:<38}{count:>8,}{peak / 1e6:>17.2f} MB{elapsed:>8.2f}s ({size / 1e6:.1f} MB file)")


if __name__ == "__main__":
    sys.exit(main())
