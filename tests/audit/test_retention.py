"""Retention: the daily prune task, `manage.py prune_audit`, and the SIEM cursor both respect."""

import io
import sys
from datetime import timedelta
from unittest import mock

import pytest
from django.core.management import CommandError, ManagementUtility, call_command
from django.utils import timezone

from keyward.audit import delivery, retention
from keyward.audit.models import AuditChain, AuditEvent, chain_key
from keyward.audit.services import verify_chain
from keyward.audit.tasks import prune_audit_retention
from keyward.tenancy.models import Org
from tests.factories import make_audit_events, make_org

pytestmark = pytest.mark.django_db


def write_at(org, days_ago: int, count: int = 1) -> None:
    with mock.patch("keyward.audit.writer.timezone.now", return_value=timezone.now() - timedelta(days=days_ago)):
        make_audit_events(org, count)


def seqs(org) -> list[int]:
    return list(AuditEvent.objects.filter(org=org).order_by("seq").values_list("seq", flat=True))


def last_seq(org) -> int:
    return AuditChain.objects.get(key=chain_key(org)).last_seq


def pruned_rows(org) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(org=org, event_type="audit.pruned").order_by("seq"))


@pytest.fixture
def siem_cursor(monkeypatch):
    """Stand in for keyward.siem: `cursor[org.pk] = seq` says how far that org's SIEM has received."""
    cursor: dict[int, int] = {}
    monkeypatch.setattr(delivery, "siem_delivered_through", lambda org: cursor.get(org.pk))
    return cursor


# --- the beat task -------------------------------------------------------------------------------


def test_each_org_is_pruned_to_its_own_retention_and_the_chain_still_verifies(siem_cursor):
    short, default, forever = make_org(audit_retention_days=30), make_org(), make_org(audit_retention_days=None)
    for org in (short, default, forever):
        write_at(org, 400, 2)
        write_at(org, 40, 3)
        write_at(org, 1, 2)

    outcome = prune_audit_retention.delay().get()

    assert outcome["deleted"] == 5 + 2
    assert (outcome["held_for_siem"], outcome["failed"]) == (0, 0)
    assert seqs(short) == [6, 7, 8]  # 8: the audit.pruned row
    assert seqs(default) == [3, 4, 5, 6, 7, 8]
    assert seqs(forever) == [1, 2, 3, 4, 5, 6, 7]
    row = pruned_rows(short)[0]
    assert (row.actor_type, row.actor_name, row.outcome) == ("system", "audit-retention", "success")
    assert row.detail["days"] == 30
    assert row.detail["deleted"] == 5
    assert row.detail["checkpoint_seq"] == 5
    for org in (short, default, forever):
        assert verify_chain(org).ok, verify_chain(org).broken


def test_a_second_run_changes_nothing(siem_cursor):
    org = make_org(audit_retention_days=30)
    write_at(org, 40, 3)
    write_at(org, 1, 1)
    prune_audit_retention.delay().get()
    head = last_seq(org)

    outcome = prune_audit_retention.delay().get()

    assert outcome["deleted"] == 0
    assert last_seq(org) == head  # no audit.pruned row for a prune that deleted nothing
    assert len(pruned_rows(org)) == 1
    assert verify_chain(org).ok


def test_a_run_is_bounded_and_the_next_run_continues(monkeypatch, siem_cursor):
    monkeypatch.setattr(retention, "BATCH_ROWS", 4)
    monkeypatch.setattr(retention, "MAX_ROWS_PER_ORG_RUN", 10)
    org = make_org(audit_retention_days=30)
    write_at(org, 40, 25)

    deleted = [prune_audit_retention.delay().get()["deleted"] for _ in range(4)]

    assert deleted == [10, 10, 5, 0]
    rows = pruned_rows(org)
    assert [row.detail["deleted"] for row in rows] == [4, 4, 2, 4, 4, 2, 4, 1]
    assert [row.detail.get("more_to_prune", False) for row in rows] == [True] * 7 + [False]
    assert AuditEvent.objects.filter(org=org).exclude(event_type="audit.pruned").count() == 0
    assert verify_chain(org).ok


def test_rows_a_siem_has_not_received_are_never_pruned(siem_cursor):
    org = make_org(audit_retention_days=30)
    write_at(org, 40, 6)
    siem_cursor[org.pk] = 4

    outcome = prune_audit_retention.delay().get()

    assert (outcome["deleted"], outcome["held_for_siem"]) == (4, 1)
    assert seqs(org) == [5, 6, 7]
    row = pruned_rows(org)[0]
    assert (row.detail["siem_delivered_through"], row.detail["held_for_siem"]) == (4, True)
    assert verify_chain(org).ok

    siem_cursor[org.pk] = 6  # the SIEM caught up: the rest goes on the next run
    assert prune_audit_retention.delay().get()["deleted"] == 2
    assert seqs(org) == [7, 8]
    assert verify_chain(org).ok


def test_nothing_is_pruned_while_the_siem_has_received_nothing(siem_cursor):
    org = make_org(audit_retention_days=30)
    write_at(org, 40, 3)
    siem_cursor[org.pk] = 0

    assert prune_audit_retention.delay().get()["deleted"] == 0
    assert seqs(org) == [1, 2, 3]


def test_the_manual_prune_endpoint_respects_the_siem_cursor_too(callers, siem_cursor):
    write_at(callers.org, 40, 5)
    siem_cursor[callers.org.pk] = 2

    response = callers.client("owner").post("/v1/audit/prune", {"days": 30}, format="json")

    assert response.json() == {"deleted": 2, "held_for_siem": True}
    assert seqs(callers.org) == [3, 4, 5, 6]
    assert verify_chain(callers.org).ok


def test_a_failing_siem_cursor_stops_that_org_only(monkeypatch):
    broken, fine = make_org(audit_retention_days=30), make_org(audit_retention_days=30)
    write_at(broken, 40, 3)
    write_at(fine, 40, 3)

    def cursor(org):
        if org.pk == broken.pk:
            raise RuntimeError("siem database unavailable")
        return None

    monkeypatch.setattr(delivery, "siem_delivered_through", cursor)

    outcome = prune_audit_retention.delay().get()

    assert (outcome["deleted"], outcome["failed"]) == (3, 1)
    assert seqs(broken) == [1, 2, 3]  # fail closed: nothing deleted without knowing what the SIEM has
    assert seqs(fine) == [4]


# --- the accessor --------------------------------------------------------------------------------


def test_a_siem_module_without_the_cursor_function_fails_closed(monkeypatch):
    monkeypatch.setitem(sys.modules, "keyward.siem.services", mock.Mock(spec=[]))
    with pytest.raises(ImportError):
        delivery.siem_delivered_through(make_org())


# --- manage.py prune_audit -----------------------------------------------------------------------


def run_command(*args: str) -> str:
    out = io.StringIO()
    call_command("prune_audit", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_the_command_prunes_every_org_with_counts_and_is_idempotent(siem_cursor):
    first, second = make_org(audit_retention_days=None), make_org()
    write_at(first, 40, 3)
    write_at(second, 40, 2)
    write_at(second, 1, 1)

    output = run_command("--days", "30")

    assert f"{first.slug}: deleted 3 row(s), chain now starts after seq 3" in output
    assert f"{second.slug}: deleted 2 row(s), chain now starts after seq 2" in output
    assert "Deleted 5 audit row(s) older than 30 day(s) in" in output
    row = pruned_rows(first)[0]
    assert (row.actor_type, row.actor_name) == ("system", "manage.py prune_audit")
    again = run_command("--days", "30")
    assert f"{first.slug}: deleted 0 row(s)" in again
    assert "Deleted 0 audit row(s)" in again
    assert len(pruned_rows(first)) == len(pruned_rows(second)) == 1
    assert verify_chain(first).ok
    assert verify_chain(second).ok


def test_the_command_can_prune_one_org(siem_cursor):
    target, bystander = make_org(), make_org()
    write_at(target, 40, 2)
    write_at(bystander, 40, 2)

    output = run_command("--days", "30", "--org", target.slug)

    assert f"{target.slug}: deleted 2 row(s)" in output
    assert bystander.slug not in output
    assert seqs(bystander) == [1, 2]


def test_the_command_is_siem_safe_and_says_so(siem_cursor):
    org = make_org()
    write_at(org, 40, 5)
    siem_cursor[org.pk] = 3

    output = run_command("--days", "30", "--org", org.slug)

    assert f"{org.slug}: deleted 3 row(s), chain now starts after seq 3" in output
    assert "older rows after seq 3 kept until every SIEM destination has them" in output
    assert seqs(org) == [4, 5, 6]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--days", "0"], "--days must be a whole number from 30 to 36500"),
        (["--days", "-3"], "--days must be a whole number"),
        (["--days", "29"], "--days must be a whole number from 30"),
        (["--days", "36501"], "--days must be a whole number"),
        (["--days", "ten"], "--days must be a whole number"),
        (["--days", "30", "--org", "no-such-org"], "No org with slug 'no-such-org'"),
    ],
)
def test_the_command_refuses_bad_input(args, message):
    org = make_org()
    write_at(org, 400, 2)
    with pytest.raises(CommandError, match=message):
        run_command(*args)
    assert seqs(org) == [1, 2]


def test_the_command_needs_days():
    with pytest.raises(CommandError, match="--days"):
        run_command()


def test_the_command_fails_loudly_when_an_org_cannot_be_pruned(monkeypatch):
    broken, fine = make_org(), make_org()
    write_at(broken, 40, 2)
    write_at(fine, 40, 2)

    def cursor(org):
        if org.pk == broken.pk:
            raise RuntimeError("siem database unavailable")
        return None

    monkeypatch.setattr(delivery, "siem_delivered_through", cursor)
    err = io.StringIO()
    out = io.StringIO()

    with pytest.raises(CommandError, match="Pruning failed for 1 org"):
        call_command("prune_audit", "--days", "30", stdout=out, stderr=err)

    assert f"FAILED {broken.slug}: RuntimeError" in err.getvalue()
    assert f"{fine.slug}: deleted 2 row(s)" in out.getvalue()
    assert seqs(broken) == [1, 2]


def test_the_command_exits_non_zero_from_the_shell(capsys):
    with pytest.raises(SystemExit) as exit_info:
        ManagementUtility(["manage.py", "prune_audit", "--days", "0"]).execute()
    assert exit_info.value.code == 1
    assert "--days must be a whole number" in capsys.readouterr().err


# --- with the real keyward.siem cursor -----------------------------------------------------------

SIEM_SECRET = "retention-test-siem-secret-0123456789"


def test_the_accessor_is_wired_to_keyward_siem():
    from keyward.siem import services as siem_services

    org = make_org()
    assert delivery.siem_delivered_through(org) is None  # no destination: nothing to wait for
    with mock.patch.object(siem_services, "siem_delivered_through", return_value=7) as real:
        assert delivery.siem_delivered_through(org) == 7
    real.assert_called_once_with(org)


def test_retention_waits_for_an_orgs_own_siem_destination(callers):
    from keyward.siem import services as siem_services
    from keyward.siem.models import DestinationKind, SiemCursor

    org = callers.org
    write_at(org, 40, 5)
    siem_services.set_destination(org, url="http://127.0.0.1:9/siem", secret=SIEM_SECRET, actor=callers.owner)
    Org.objects.filter(pk=org.pk).update(audit_retention_days=30)

    assert delivery.siem_delivered_through(org) == 0
    assert prune_audit_retention.delay().get()["deleted"] == 0  # nothing received yet: nothing goes

    SiemCursor.objects.filter(destination=DestinationKind.ORG, chain=chain_key(org)).update(last_seq=3)

    assert prune_audit_retention.delay().get()["deleted"] == 3
    assert seqs(org)[:3] == [4, 5, 6]
    row = pruned_rows(org)[-1]
    assert (row.detail["siem_delivered_through"], row.detail["held_for_siem"]) == (3, True)
    assert verify_chain(org).ok


def test_retention_waits_for_the_operators_platform_siem(settings):
    from keyward.siem.models import DestinationKind, SiemCursor

    settings.KEYWARD_SIEM_WEBHOOK_URL = "http://127.0.0.1:9/platform-siem"
    settings.KEYWARD_SIEM_WEBHOOK_SECRET = SIEM_SECRET
    org = make_org(audit_retention_days=30)
    write_at(org, 40, 4)

    assert delivery.siem_delivered_through(org) == 0
    output = run_command("--days", "30", "--org", org.slug)
    assert f"{org.slug}: deleted 0 row(s); older rows after seq 0 kept" in output

    SiemCursor.objects.create(destination=DestinationKind.PLATFORM, chain=chain_key(org), org=org, last_seq=2)

    assert prune_audit_retention.delay().get()["deleted"] == 2
    assert seqs(org) == [3, 4, 5]
    assert verify_chain(org).ok


# --- a tampered chain is never pruned ------------------------------------------------------------


def tamper(org, seq: int) -> None:
    """What an intruder with database access does: rewrite an old row in place."""
    AuditEvent.objects.filter(org=org, seq=seq).update(reason_code="nothing_to_see")


def test_pruning_refuses_to_delete_tampered_rows_everywhere_it_runs(siem_cursor, callers):
    """Deleting them would destroy the evidence and leave a chain that verifies again."""
    tampered, fine = callers.org, make_org()
    for org in (tampered, fine):
        Org.objects.filter(pk=org.pk).update(audit_retention_days=30)
        write_at(org, 40, 4)
        write_at(org, 1, 1)
    tamper(tampered, 2)
    before = seqs(tampered)
    assert verify_chain(tampered).broken.seq == 2

    outcomes = {outcome.org.pk: outcome for outcome in retention.apply_retention()}
    assert outcomes[tampered.pk].error == "audit_chain_broken"
    assert outcomes[fine.pk].deleted == 4  # one org's broken chain does not stop the others

    api = callers.client("owner").post("/v1/audit/prune", {"days": 30}, format="json")
    assert api.status_code == 409
    assert api.json()["error"] == "audit_chain_broken"
    assert "seq 2" in api.json()["message"]

    err = io.StringIO()
    with pytest.raises(CommandError, match="Pruning failed for 1 org"):
        call_command("prune_audit", "--days", "30", "--org", tampered.slug, stdout=io.StringIO(), stderr=err)
    assert "broken at seq 2" in err.getvalue()

    assert seqs(tampered) == before  # nothing deleted, no audit.pruned row
    assert verify_chain(tampered).broken.seq == 2  # the evidence still stands


def test_a_tampered_row_newer_than_the_cutoff_does_not_block_pruning_older_ones(siem_cursor):
    """Only the rows to be deleted are checked; verify_audit still reports the later break."""
    org = make_org()
    write_at(org, 40, 3)
    write_at(org, 1, 2)
    tamper(org, 5)

    assert retention.prune_org(org, 30, actor=retention.RETENTION_ACTOR).deleted == 3
    assert verify_chain(org).broken.seq == 5
