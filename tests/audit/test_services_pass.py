"""Audit tests that only mean something on PostgreSQL: real row locks, real server-side cursors."""

import json
import threading

import pytest
from django.db import connections
from django.utils import timezone

from keyward.audit.chain import compute_hash
from keyward.audit.models import AuditChain, AuditEvent, chain_key
from keyward.audit.services import EXPORT_MAX_ROWS, verify_chain
from keyward.audit.writer import record_event
from tests.factories import make_org

THREADS, EVENTS_PER_THREAD = 8, 25


def write_concurrently(orgs) -> list[BaseException]:
    """THREADS threads start together; each appends EVENTS_PER_THREAD events, cycling through `orgs`."""
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            for i in range(EVENTS_PER_THREAD):
                record_event(
                    org=orgs[(n + i) % len(orgs)],
                    event_type="test.concurrent",
                    outcome="success",
                    detail={"thread": n, "i": i},
                )
        except BaseException as exc:  # reported to the test below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return errors


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_never_fork_an_org_chain():
    """The org's chain head does not exist yet, so its creation races too."""
    org = make_org()

    assert write_concurrently([org]) == []

    total = THREADS * EVENTS_PER_THREAD
    rows = list(AuditEvent.objects.filter(org=org).order_by("seq").values_list("seq", "prev_hash", "hash"))
    assert [seq for seq, _, _ in rows] == list(range(1, total + 1))
    assert len({row_hash for _, _, row_hash in rows}) == total
    assert all(rows[n][1] == rows[n - 1][2] for n in range(1, total))
    assert verify_chain(org).ok
    assert AuditChain.objects.get(key=chain_key(org)).last_seq == total


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_across_org_and_platform_chains_keep_each_contiguous():
    first, second = make_org(), make_org()

    assert write_concurrently([first, second, None]) == []

    counts = [AuditEvent.objects.filter(org=org).count() for org in (first, second, None)]
    assert sum(counts) == THREADS * EVENTS_PER_THREAD
    for org, count in zip((first, second, None), counts, strict=True):
        seqs = list(AuditEvent.objects.filter(org=org).order_by("seq").values_list("seq", flat=True))
        assert seqs == list(range(1, count + 1))
        assert verify_chain(org).ok


def bulk_chain(org, count: int) -> None:
    """A valid chain of `count` rows, written in bulk (the writer's one-by-one path is for real events)."""
    prev_hash, now, batch = "0" * 64, timezone.now(), []
    for seq in range(1, count + 1):
        event = AuditEvent(
            org=org, seq=seq, created_at=now, event_type="test.bulk", outcome="success", actor_type="system"
        )
        event.prev_hash = prev_hash
        event.hash = prev_hash = compute_hash(event)
        batch.append(event)
        if len(batch) == 5_000:
            AuditEvent.objects.bulk_create(batch)
            batch = []
    AuditEvent.objects.bulk_create(batch)
    AuditChain.objects.create(key=chain_key(org), last_seq=count, last_hash=prev_hash)


@pytest.mark.postgres
@pytest.mark.django_db
def test_export_of_more_than_50000_rows_pages_through_the_header(callers):
    total = EXPORT_MAX_ROWS + 1
    bulk_chain(callers.org, total)
    client = callers.client("viewer")

    first = client.get("/v1/audit/export?format=json")
    first_rows = json.loads(b"".join(first.streaming_content))
    assert len(first_rows) == EXPORT_MAX_ROWS
    assert (first_rows[0]["seq"], first_rows[-1]["seq"]) == (1, EXPORT_MAX_ROWS)
    assert first["X-Keyward-Next-Since"] == str(EXPORT_MAX_ROWS)

    second = client.get(f"/v1/audit/export?format=csv&since={first['X-Keyward-Next-Since']}")
    lines = b"".join(second.streaming_content).decode().splitlines()
    assert len(lines) == 3  # header, the one remaining row, and the first export's own audit row
    assert lines[1].startswith(f"{total},")
    assert lines[2].startswith(f"{total + 1},")
    assert ",audit.exported," in lines[2]
    assert "X-Keyward-Next-Since" not in second
    assert verify_chain(callers.org).ok


@pytest.mark.postgres
@pytest.mark.django_db
def test_background_export_of_more_than_50000_rows_has_no_cap(
    callers, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.KEYWARD_EXPORT_DIR = tmp_path
    total = EXPORT_MAX_ROWS + 1
    bulk_chain(callers.org, total)
    client = callers.client("viewer")

    with django_capture_on_commit_callbacks(execute=True):
        created = client.post("/v1/audit/exports", {"format": "csv"}, format="json")

    status = client.get(f"/v1/audit/exports/{created.json()['export_id']}").json()
    assert (status["status"], status["rows"], status["until"]) == ("done", total, total)
    download = client.get(status["download_url"].removeprefix("http://testserver"))
    lines = b"".join(download.streaming_content).decode().splitlines()
    assert len(lines) == total + 1  # header + every row
    assert lines[1].startswith("1,")
    assert lines[-1].startswith(f"{total},")


def _export(org, owner, viewer) -> None:
    from keyward.audit.exports import request_export

    request_export(org, format="json", since=0, until=None, actor=owner)


def _settings(org, owner, viewer) -> None:
    from keyward.orgs.services import update_settings

    update_settings(org, changes={"approval_grant_seconds": 600}, actor=owner)


def _role(org, owner, viewer) -> None:
    from keyward.accounts.services import change_role

    change_role(org=org, target=viewer, role="admin", actor=owner)


def wait_for_a_lock_wait(cursor, outcome: list) -> None:
    """Until another backend of this database waits on a lock (bounded: 200 polls)."""
    for _ in range(200):
        assert not outcome, f"the org-locking action ended without waiting: {outcome}"
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # a transaction otherwise sees its first snapshot
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
        )
        if cursor.fetchone()[0]:
            return
        threading.Event().wait(0.05)
    raise AssertionError("the org-locking action never waited for the chain head")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("locks_the_org", [_export, _settings, _role], ids=["export", "settings", "role"])
def test_an_org_row_lock_never_deadlocks_with_an_audit_write(locks_the_org):
    """An audit row references its org (FOR KEY SHARE on the org row) while its writer holds the chain
    head. An action that locked the org FOR UPDATE and then waited for the chain head deadlocked with
    it (schemathesis: 503 audit_unavailable on POST /v1/audit/exports). FOR NO KEY UPDATE does not."""
    from django.db import connection, transaction

    from keyward.accounts.models import Role
    from keyward.audit.writer import lock_chain_head
    from tests.factories import make_account

    org = make_org()
    owner, viewer = make_account(org, Role.OWNER), make_account(org, Role.VIEWER)
    outcome: list = []

    def action() -> None:
        try:
            locks_the_org(org, owner, viewer)
            outcome.append("done")
        except BaseException as exc:  # reported below
            outcome.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=action)
    with transaction.atomic():
        lock_chain_head(chain_key(org))
        thread.start()
        with connection.cursor() as cursor:
            wait_for_a_lock_wait(cursor, outcome)  # the action holds the org row and waits for the chain head
        record_event(org=org, event_type="test.concurrent", outcome="success")  # must not wait for the org row
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert outcome == ["done"]
    assert verify_chain(org).ok
