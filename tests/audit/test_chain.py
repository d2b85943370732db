"""The hash chain: what the writer stores, and what verify_chain / manage.py verify_audit catch."""

import hashlib
import json
from datetime import UTC, timedelta
from io import StringIO
from itertools import pairwise
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, transaction

from keyward.audit.models import GENESIS_HASH, AuditChain, AuditEvent, chain_key
from keyward.audit.services import verify_all_chains, verify_chain
from keyward.audit.writer import Actor, AuditContext, AuditUnavailable, record_committed_event, record_event
from tests.factories import make_account, make_audit_events, make_org

pytestmark = pytest.mark.django_db


def verify_command(*args: str) -> str:
    out = StringIO()
    call_command("verify_audit", *args, stdout=out)
    return out.getvalue()


def broken_command(*args: str) -> str:
    out = StringIO()
    with pytest.raises(CommandError, match="broken"):
        call_command("verify_audit", *args, stdout=out)
    return out.getvalue()


def independent_hash(row: AuditEvent) -> str:
    """The documented formula, written out without the app's helpers."""
    canonical = {
        "seq": row.seq,
        "org": row.org_id,
        "created_at": row.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "event_type": row.event_type,
        "outcome": row.outcome,
        "reason_code": row.reason_code,
        "actor_type": row.actor_type,
        "actor_id": row.actor_id,
        "actor_name": row.actor_name,
        "end_user": row.end_user,
        "agent": row.agent,
        "delegation_chain": row.delegation_chain,
        "provider": row.provider,
        "scope": row.scope,
        "environment": row.environment,
        "credential_jti": row.credential_jti,
        "request_id": row.request_id,
        "ip": row.ip,
        "detail": row.detail,
        "prev_hash": row.prev_hash,
    }
    body = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(row.prev_hash.encode() + body).hexdigest()


def full_event(org, n: int = 0) -> AuditEvent:
    return record_event(
        org=org,
        event_type="credential.issued",
        outcome="success",
        reason_code="policy_allow",
        actor=Actor.agent(7, "deploy-bot"),
        context=AuditContext(request_id=f"req_test_{n}", ip="203.0.113.9"),
        end_user="alice@example.com",
        agent="deploy-bot",
        delegation_chain=["planner", "deploy-bot"],
        provider="github",
        scope="repo:read",
        environment="prod",
        credential_jti=f"jti-{n}",
        detail={"ttl_seconds": 300, "rule_id": 12, "tags": ["a", "b"], "approved": True},
    )


def test_many_writes_make_contiguous_linked_chains_that_verify():
    first, second = make_org(), make_org()
    for n in range(30):
        full_event(first, n)
        make_audit_events(second if n % 2 else None)

    for org, count in [(first, 30), (second, 15), (None, 15)]:
        rows = list(AuditEvent.objects.filter(org=org).order_by("seq"))
        assert [row.seq for row in rows] == list(range(1, count + 1))
        assert rows[0].prev_hash == GENESIS_HASH
        for before, after in pairwise(rows):
            assert after.prev_hash == before.hash
        assert all(independent_hash(row) == row.hash for row in rows)
        result = verify_chain(org)
        assert result.ok, result.broken
        assert (result.rows_checked, result.first_seq, result.last_seq) == (count, 1, count)
        head = AuditChain.objects.get(key=chain_key(org))
        assert (head.last_seq, head.last_hash) == (count, rows[-1].hash)


def test_the_writer_stores_every_fact_and_the_request_context():
    org = make_org()
    event = full_event(org, 1)
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.org == org
    assert (stored.actor_type, stored.actor_id, stored.actor_name) == ("agent", "7", "deploy-bot")
    assert stored.delegation_chain == ["planner", "deploy-bot"]
    assert stored.detail == {"ttl_seconds": 300, "rule_id": 12, "tags": ["a", "b"], "approved": True}
    assert (stored.request_id, stored.ip, stored.credential_jti) == ("req_test_1", "203.0.113.9", "jti-1")


def test_account_actor_is_copied_as_text_so_rows_outlive_the_account():
    account = make_account()
    account_id = account.pk
    event = record_event(org=account.org, event_type="account.login", outcome="success", actor=account)
    account.delete()
    event.refresh_from_db()
    assert (event.actor_type, event.actor_id, event.actor_name) == ("account", str(account_id), account.email)
    assert verify_chain(event.org).ok


TAMPERED_VALUES = {
    "event_type": "account.logout",
    "outcome": "failure",
    "reason_code": "nothing_to_see",
    "actor_type": "system",
    "actor_id": "999",
    "actor_name": "mallory@example.com",
    "end_user": "bob@example.com",
    "agent": "other-bot",
    "delegation_chain": ["other-bot"],
    "provider": "aws",
    "scope": "admin:*",
    "environment": "staging",
    "credential_jti": "jti-forged",
    "request_id": "req_forged_000",
    "ip": "198.51.100.1",
    "detail": {"ttl_seconds": 86400},
    "hash": "f" * 64,
}


@pytest.mark.parametrize(("field", "value"), TAMPERED_VALUES.items())
def test_tampering_with_any_field_is_found_at_that_row(field, value):
    org = make_org()
    for n in range(10):
        full_event(org, n)
    AuditEvent.objects.filter(org=org, seq=5).update(**{field: value})

    result = verify_chain(org)

    assert result.broken is not None
    assert (result.broken.seq, result.broken.reason) == (5, "hash_mismatch")
    assert result.last_seq == 4
    assert "BROKEN org:" in broken_command("--org", org.slug)
    assert "at seq 5: hash_mismatch" in broken_command()


def test_tampering_with_the_time_is_found():
    org = make_org()
    events = [full_event(org, n) for n in range(5)]
    AuditEvent.objects.filter(pk=events[2].pk).update(created_at=events[2].created_at - timedelta(microseconds=1))
    assert (verify_chain(org).broken.seq, verify_chain(org).broken.reason) == (3, "hash_mismatch")


def test_tampering_with_prev_hash_is_found():
    org = make_org()
    events = [full_event(org, n) for n in range(5)]
    AuditEvent.objects.filter(pk=events[2].pk).update(prev_hash="0" * 64)
    assert (verify_chain(org).broken.seq, verify_chain(org).broken.reason) == (3, "prev_hash_mismatch")


def test_a_rewritten_row_with_a_recomputed_hash_breaks_the_next_link():
    org = make_org()
    for n in range(6):
        full_event(org, n)
    row = AuditEvent.objects.get(org=org, seq=3)
    row.outcome = "failure"
    row.hash = independent_hash(row)
    row.save()

    broken = verify_chain(org).broken
    assert (broken.seq, broken.reason) == (4, "prev_hash_mismatch")


def test_deleting_a_middle_row_is_found():
    org = make_org()
    make_audit_events(org, 8)
    AuditEvent.objects.filter(org=org, seq=4).delete()

    broken = verify_chain(org).broken
    assert (broken.seq, broken.reason) == (4, "seq_gap")
    assert "at seq 4: seq_gap" in broken_command("--org", org.slug)


def test_deleting_the_newest_rows_is_found_through_the_chain_head():
    org = make_org()
    make_audit_events(org, 8)
    AuditEvent.objects.filter(org=org, seq__gte=7).delete()

    broken = verify_chain(org).broken
    assert (broken.seq, broken.reason) == (7, "head_mismatch")


def test_a_row_appended_behind_the_writers_back_is_found():
    org = make_org()
    events = make_audit_events(org, 3)
    forged = AuditEvent(org=org, seq=4, created_at=events[-1].created_at, event_type="account.login", outcome="success")
    forged.actor_type, forged.prev_hash = "system", events[-1].hash
    forged.hash = independent_hash(forged)
    forged.save()

    broken = verify_chain(org).broken
    assert (broken.seq, broken.reason) == (4, "head_mismatch")


def test_renumbering_a_row_is_found():
    org = make_org()
    make_audit_events(org, 5)
    AuditEvent.objects.filter(org=org, seq=3).update(seq=30)
    assert verify_chain(org).broken.reason == "seq_gap"
    assert verify_chain(org).broken.seq == 3


def test_moving_a_row_to_another_org_breaks_both_chains():
    victim, other = make_org(), make_org()
    make_audit_events(victim, 4)
    make_audit_events(other, 4)
    AuditEvent.objects.filter(org=victim, seq=2).delete()
    AuditEvent.objects.filter(org=other, seq=2).update(org=victim)

    assert (verify_chain(victim).broken.seq, verify_chain(victim).broken.reason) == (2, "prev_hash_mismatch")
    assert (verify_chain(other).broken.seq, verify_chain(other).broken.reason) == (2, "seq_gap")


def test_a_forged_checkpoint_that_hides_deleted_rows_is_found():
    """Deleting the oldest rows and moving the checkpoint is caught: no audit.pruned row vouches for it."""
    org = make_org()
    events = make_audit_events(org, 6)
    AuditEvent.objects.filter(org=org, seq__lte=3).delete()
    AuditChain.objects.filter(key=chain_key(org)).update(checkpoint_seq=3, checkpoint_hash=events[2].hash)

    broken = verify_chain(org).broken
    assert (broken.seq, broken.reason) == (3, "checkpoint_mismatch")


def test_verify_audit_prints_ok_with_counts_for_every_chain():
    org = make_org()
    make_audit_events(org, 3)
    make_audit_events(None, 2)
    silent = make_org()

    out = verify_command()

    assert "OK platform: 2 rows verified (seq 1..2)" in out
    assert f"OK org:{org.pk} ({org.slug}): 3 rows verified (seq 1..3)" in out
    assert silent.slug not in out
    assert [result.ok for _, result in verify_all_chains()] == [True, True]
    assert "OK org:" in verify_command("--org", org.slug)


def test_verify_audit_reports_a_break_even_when_other_chains_are_fine():
    good, bad = make_org(), make_org()
    make_audit_events(good, 3)
    make_audit_events(bad, 3)
    AuditEvent.objects.filter(org=bad, seq=2).update(outcome="failure")

    out = StringIO()
    with pytest.raises(CommandError, match="1 of 2 audit chain"):
        call_command("verify_audit", stdout=out)
    assert "OK org:" in out.getvalue()
    assert f"BROKEN org:{bad.pk} ({bad.slug}) at seq 2: hash_mismatch" in out.getvalue()


def test_verify_audit_with_an_unknown_org_is_an_error():
    with pytest.raises(CommandError, match="No org"):
        call_command("verify_audit", "--org", "nope", stdout=StringIO())


def test_verify_audit_with_no_chains_says_so():
    assert "No audit chains yet." in verify_command()


@pytest.mark.parametrize(
    "detail",
    [
        {"password": "hunter2"},
        {"client_secret": "s"},
        {"apiKey": "k"},
        {"access_token": "t"},
        {"totp_code": "123456"},
        {"agent_assertion": "eyJ..."},
        {"outer": {"private_key_pem": "-----BEGIN"}},
        {"items": [{"refreshToken": "t"}]},
    ],
)
def test_a_detail_key_naming_a_secret_is_refused_and_nothing_is_written(detail):
    org = make_org()
    with pytest.raises(ValueError, match="names a secret"):
        record_event(org=org, event_type="test.event", outcome="success", detail=detail)
    assert not AuditEvent.objects.exists()
    assert not AuditChain.objects.filter(last_seq__gt=0).exists()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"event_type": "Account Login"}, ValueError),
        ({"event_type": "login"}, ValueError),
        ({"outcome": "great"}, ValueError),
        ({"colour": "red"}, TypeError),
        ({"detail": {"ratio": 0.5}}, TypeError),
        ({"detail": ["not", "a", "dict"]}, TypeError),
        ({"delegation_chain": "a,b"}, TypeError),
        ({"end_user": 42}, TypeError),
    ],
)
def test_malformed_events_are_refused(kwargs, error):
    fields = {"org": make_org(), "event_type": "test.event", "outcome": "success", **kwargs}
    with pytest.raises(error):
        record_event(**fields)
    assert not AuditEvent.objects.exists()


def test_hostile_text_is_stored_safely_and_still_verifies():
    """A NUL byte, an overlong value or a forged IP must neither break the write nor the chain."""
    org = make_org()
    event = record_event(
        org=org,
        event_type="test.event",
        outcome="failure",
        context=AuditContext(request_id="r" * 500, ip="1.2.3.4, <script>"),
        end_user="eve\x00@example.com",
        agent="a" * 1000,
        detail={"note": "nul\x00byte"},
    )
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.end_user == "eve\ufffd@example.com"
    assert stored.agent == "a" * 200
    assert len(stored.request_id) == 128
    assert stored.ip == ""
    assert stored.detail == {"note": "nul\ufffdbyte"}
    assert verify_chain(org).ok


def test_a_failed_write_raises_audit_unavailable_and_leaves_the_chain_untouched():
    org = make_org()
    make_audit_events(org, 2)
    with (
        mock.patch.object(AuditEvent, "save", side_effect=DatabaseError("disk full")),
        pytest.raises(AuditUnavailable) as caught,
    ):
        make_audit_events(org)
    assert (caught.value.status_code, caught.value.code) == (503, "audit_unavailable")
    assert AuditChain.objects.get(key=chain_key(org)).last_seq == 2
    make_audit_events(org)
    assert verify_chain(org).ok
    assert verify_chain(org).last_seq == 3


def test_a_committed_event_refuses_to_run_inside_a_transaction_that_could_roll_it_back():
    with transaction.atomic(), pytest.raises(RuntimeError, match="durable"):
        record_committed_event(org=None, event_type="test.event", outcome="failure")
    event = record_committed_event(org=None, event_type="test.event", outcome="failure")
    assert event.seq == 1
