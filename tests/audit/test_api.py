"""/v1/audit, /v1/audit/export and /v1/audit/prune: roles, org scoping, filters, paging, CSV safety."""

import csv
import io
import json
from datetime import timedelta
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from keyward.audit import services
from keyward.audit.models import AuditChain, AuditEvent, chain_key
from keyward.audit.services import verify_chain
from keyward.audit.writer import Actor, AuditContext, record_event
from keyward.core.exceptions import InvalidRequest
from tests.audit.offline import assert_rows_reverify
from tests.factories import make_audit_events
from tests.permissions import assert_permission_matrix

pytestmark = pytest.mark.django_db

VIEWER_READ = {"anonymous": 401, "other_org": 200, "viewer": 200, "admin": 200, "owner": 200}
ADMIN_WRITE = {"anonymous": 401, "other_org": 200, "viewer": 403, "admin": 200, "owner": 200}


def body_of(response) -> bytes:
    return b"".join(response.streaming_content)


def exported_json(response) -> list[dict]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    return json.loads(body_of(response))


def exported_seqs(client, since: int) -> tuple[list[int], str | None]:
    response = client.get(f"/v1/audit/export?since={since}")
    return [row["seq"] for row in exported_json(response)], response.get("X-Keyward-Next-Since")


def seqs(response) -> list[int]:
    return [row["seq"] for row in response.json()["results"]]


# --- GET /v1/audit -------------------------------------------------------------------------------


def test_list_matrix_newest_first_and_other_orgs_rows_never_appear(callers):
    make_audit_events(callers.org, 3, end_user="ours@example.com")
    make_audit_events(callers.other_org.org, 2, end_user="theirs@example.com")
    make_audit_events(None, 2, end_user="platform@example.com")

    responses = assert_permission_matrix(callers, "GET", "/v1/audit", VIEWER_READ)

    assert seqs(responses["viewer"]) == [3, 2, 1]
    assert {row["end_user"] for row in responses["viewer"].json()["results"]} == {"ours@example.com"}
    assert {row["end_user"] for row in responses["other_org"].json()["results"]} == {"theirs@example.com"}
    assert responses["viewer"].json()["page_size"] == 50
    row = responses["viewer"].json()["results"][0]
    assert set(row) >= {"seq", "created_at", "event_type", "outcome", "actor_name", "prev_hash", "hash"}
    assert "org" not in row


def test_list_filters(callers):
    org = callers.org
    record_event(org=org, event_type="credential.issued", outcome="success", agent="bot-a", end_user="alice")
    record_event(org=org, event_type="credential.denied", outcome="denied", agent="bot-a", end_user="bob")
    record_event(org=org, event_type="credential.issued", outcome="success", agent="bot-b", end_user="alice")
    record_event(org=org, event_type="account.login_failed", outcome="failure")
    client = callers.client("viewer")

    assert seqs(client.get("/v1/audit?agent=bot-a")) == [2, 1]
    assert seqs(client.get("/v1/audit?event=credential.issued")) == [3, 1]
    assert seqs(client.get("/v1/audit?outcome=denied")) == [2]
    assert seqs(client.get("/v1/audit?end_user=alice")) == [3, 1]
    assert seqs(client.get("/v1/audit?agent=bot-a&end_user=alice")) == [1]
    assert seqs(client.get("/v1/audit?agent=nobody")) == []


def test_list_since_and_until(callers):
    base = timezone.now() - timedelta(days=3)
    for day in range(3):
        with mock.patch("keyward.audit.writer.timezone.now", return_value=base + timedelta(days=day)):
            make_audit_events(callers.org)
    client = callers.client("viewer")
    middle = (base + timedelta(days=1)).isoformat().replace("+00:00", "Z")

    assert seqs(client.get("/v1/audit", {"since": middle})) == [3, 2]
    assert seqs(client.get("/v1/audit", {"until": middle})) == [1]
    assert seqs(client.get("/v1/audit", {"since": middle, "until": middle})) == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=yesterday", "since"),
        ("until=2024-13-45T00:00:00Z", "until"),
        ("outcome=fine", "outcome"),
        ("limit=0", "limit"),
        ("limit=many", "limit"),
        ("limit=100000", "limit"),
        ("cursor=not-a-cursor", "cursor"),
    ],
)
def test_list_bad_query_params_are_400s_with_field_errors(callers, query, field):
    make_audit_events(callers.org, 2)
    response = callers.client("viewer").get(f"/v1/audit?{query}")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert field in response.json()["fields"]


def test_cursor_pagination_walks_every_row_once_newest_first(callers):
    make_audit_events(callers.org, 7)
    client = callers.client("viewer")

    pages, url = [], "/v1/audit?limit=3"
    for _ in range(5):
        body = client.get(url).json()
        assert body["page_size"] == 3
        pages.append([row["seq"] for row in body["results"]])
        if not body["next"]:
            break
        url = body["next"]

    assert pages == [[7, 6, 5], [4, 3, 2], [1]]
    # New rows do not shift a page already reached: the cursor is a seq position, not an offset.
    make_audit_events(callers.org, 2)
    previous = client.get(url).json()["previous"]
    assert [row["seq"] for row in client.get(previous).json()["results"]] == [4, 3, 2]


def test_a_cursor_cannot_reach_another_orgs_rows(callers):
    make_audit_events(callers.other_org.org, 5)
    make_audit_events(callers.org, 5)
    first = callers.client("other_org").get("/v1/audit?limit=2").json()
    cursor = parse_qs(urlsplit(first["next"]).query)["cursor"][0]

    response = callers.client("viewer").get("/v1/audit", {"limit": 2, "cursor": cursor})

    assert response.status_code == 200
    assert seqs(response) == [3, 2]
    ours = set(AuditEvent.objects.filter(org=callers.org).values_list("hash", flat=True))
    assert {row["hash"] for row in response.json()["results"]} <= ours


# --- GET /v1/audit/export ------------------------------------------------------------------------


def test_export_matrix_and_org_scoping(callers):
    make_audit_events(callers.org, 3, end_user="ours@example.com")
    make_audit_events(callers.other_org.org, 2, end_user="theirs@example.com")

    responses = assert_permission_matrix(callers, "GET", "/v1/audit/export", VIEWER_READ)

    rows = exported_json(responses["viewer"])
    assert [row["seq"] for row in rows] == [1, 2, 3]
    assert {row["end_user"] for row in rows} == {"ours@example.com"}
    assert {row["end_user"] for row in exported_json(responses["other_org"])} == {"theirs@example.com"}
    assert responses["viewer"]["Cache-Control"] == "no-store"
    assert "X-Keyward-Next-Since" not in responses["viewer"]


def test_exported_json_rows_reverify_offline_with_the_documented_formula(callers):
    record_event(
        org=callers.org,
        event_type="credential.issued",
        outcome="success",
        actor=Actor.agent(3, "bot"),
        context=AuditContext(request_id="req_export_1", ip="192.0.2.7"),
        delegation_chain=["planner", "bot"],
        detail={"ttl_seconds": 60, "note": "ünïcode"},
    )
    make_audit_events(callers.org, 2)

    rows = exported_json(callers.client("viewer").get("/v1/audit/export?format=json"))

    assert_rows_reverify(rows)
    assert rows[0]["org"] == callers.org.pk
    assert rows[0]["detail"] == {"ttl_seconds": 60, "note": "ünïcode"}


def test_export_pages_through_the_cap_with_the_next_since_header(callers, monkeypatch):
    monkeypatch.setattr(services, "EXPORT_MAX_ROWS", 10)
    make_audit_events(callers.org, 25)
    make_audit_events(callers.other_org.org, 30)
    client = callers.client("viewer")

    assert exported_seqs(client, 0) == (list(range(1, 11)), "10")  # and row 26 records this export
    assert exported_seqs(client, 10) == (list(range(11, 21)), "20")  # row 27
    # 21-25, then the rows of the two exports before: each export is audited after its window is fixed.
    assert exported_seqs(client, 20) == (list(range(21, 28)), None)
    assert exported_seqs(client, 10**6) == ([], None)
    exports = AuditEvent.objects.filter(org=callers.org, event_type="audit.exported").order_by("seq")
    assert [row.detail for row in exports[:3]] == [
        {"format": "json", "since": 0, "until": 10},
        {"format": "json", "since": 10, "until": 20},
        {"format": "json", "since": 20, "until": 27},
    ]
    assert exports[0].actor_name == callers.viewer.email


def test_export_with_exactly_a_cap_of_rows_left_has_no_next_cursor(callers, monkeypatch):
    monkeypatch.setattr(services, "EXPORT_MAX_ROWS", 5)
    make_audit_events(callers.org, 10)
    client = callers.client("viewer")
    assert exported_seqs(client, 0) == ([1, 2, 3, 4, 5], "5")
    assert exported_seqs(client, 5) == ([6, 7, 8, 9, 10], "10")  # row 11: the first export's own row
    assert exported_seqs(client, 10) == ([11, 12], None)


def test_export_window_is_fixed_before_streaming(callers, monkeypatch):
    """Rows appended while a page streams belong to the next page, so no row is skipped or repeated."""
    monkeypatch.setattr(services, "EXPORT_MAX_ROWS", 10)
    make_audit_events(callers.org, 4)
    response = callers.client("viewer").get("/v1/audit/export")
    make_audit_events(callers.org, 3)
    assert [row["seq"] for row in exported_json(response)] == [1, 2, 3, 4]


def test_export_csv_has_a_header_and_the_same_rows(callers):
    make_audit_events(callers.org, 3, agent="bot", detail={"n": 1})

    response = callers.client("viewer").get("/v1/audit/export?format=csv")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="audit-{callers.org.slug}-after-0.csv"'
    rows = list(csv.DictReader(io.StringIO(body_of(response).decode())))
    assert [row["seq"] for row in rows] == ["1", "2", "3"]
    assert rows[0]["agent"] == "bot"
    assert rows[0]["detail"] == '{"n":1}'
    assert rows[2]["hash"] == AuditEvent.objects.get(org=callers.org, seq=3).hash


@pytest.mark.parametrize(
    "payload",
    ['=HYPERLINK("http://evil")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A2)", "\t=1", "\r=1", "\n=1+1", " =1+1"],
)
def test_export_csv_neutralises_formula_injection(callers, payload):
    record_event(
        org=callers.org,
        event_type="credential.denied",
        outcome="denied",
        end_user=payload,
        agent=payload,
        provider=payload,
        scope=payload,
        actor=Actor.anonymous(payload),
        detail={"note": payload},
    )

    rows = list(
        csv.DictReader(
            io.StringIO(body_of(callers.client("viewer").get("/v1/audit/export?format=csv")).decode(), newline="")
        )
    )

    for column in ("end_user", "agent", "provider", "scope", "actor_name"):
        assert rows[0][column] == "'" + payload
    assert rows[0]["detail"].startswith("{")
    assert rows[0]["event_type"] == "credential.denied"


@pytest.mark.parametrize(
    ("query", "field"),
    [("format=xml", "format"), ("since=abc", "since"), ("since=-1", "since"), (f"since={2**64}", "since")],
)
def test_export_bad_params_are_400s(callers, query, field):
    response = callers.client("viewer").get(f"/v1/audit/export?{query}")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert field in response.json()["fields"]


# --- POST /v1/audit/prune ------------------------------------------------------------------------


def write_at(org, when, count: int = 1) -> None:
    with mock.patch("keyward.audit.writer.timezone.now", return_value=when):
        make_audit_events(org, count)


def test_prune_matrix(callers):
    now = timezone.now()
    write_at(callers.org, now - timedelta(days=40), 3)
    write_at(callers.other_org.org, now - timedelta(days=40), 2)

    owner_only = {"anonymous": 401, "other_org": 200, "viewer": 403, "admin": 403, "owner": 200}
    responses = assert_permission_matrix(callers, "POST", "/v1/audit/prune", owner_only, data={"days": 30})

    assert responses["other_org"].json() == {"deleted": 2, "held_for_siem": False}
    assert responses["admin"].json()["error"] == "forbidden"  # deleting history is an owner's act
    assert responses["owner"].json() == {"deleted": 3, "held_for_siem": False}
    assert verify_chain(callers.org).ok
    assert verify_chain(callers.other_org.org).ok


def test_prune_keeps_the_chain_verifiable_and_is_itself_audited(callers):
    now = timezone.now()
    write_at(callers.org, now - timedelta(days=40), 5)
    write_at(callers.org, now - timedelta(days=35), 3)
    write_at(callers.org, now, 2)
    last_old = AuditEvent.objects.get(org=callers.org, seq=5)

    response = callers.client("owner").post("/v1/audit/prune", {"days": 36}, format="json")

    assert response.status_code == 200
    assert response.json() == {"deleted": 5, "held_for_siem": False}
    assert list(AuditEvent.objects.filter(org=callers.org).order_by("seq").values_list("seq", flat=True)) == [
        6,
        7,
        8,
        9,
        10,
        11,
    ]
    head = AuditChain.objects.get(key=chain_key(callers.org))
    assert (head.checkpoint_seq, head.checkpoint_hash) == (5, last_old.hash)
    pruned = AuditEvent.objects.get(org=callers.org, seq=11)
    assert (pruned.event_type, pruned.outcome) == ("audit.pruned", "success")
    assert (pruned.actor_type, pruned.actor_name) == ("account", callers.owner.email)
    assert pruned.request_id == response["X-Request-Id"]
    assert pruned.detail == {"days": 36, "deleted": 5, "checkpoint_seq": 5, "checkpoint_hash": last_old.hash}
    result = verify_chain(callers.org)
    assert result.ok, result.broken
    assert (result.rows_checked, result.first_seq, result.checkpoint_seq) == (6, 6, 5)

    # A second prune moves the checkpoint again; the chain still verifies and keeps growing.
    second = callers.client("owner").post("/v1/audit/prune", {"days": 30}, format="json")
    assert second.json() == {"deleted": 3, "held_for_siem": False}
    make_audit_events(callers.org, 2)
    assert verify_chain(callers.org).ok
    assert AuditChain.objects.get(key=chain_key(callers.org)).checkpoint_seq == 8


def test_prune_never_deletes_a_row_newer_than_the_cutoff_even_after_a_clock_step(callers):
    now = timezone.now()
    write_at(callers.org, now - timedelta(days=40), 2)
    write_at(callers.org, now - timedelta(days=1))
    write_at(callers.org, now - timedelta(days=50))  # the clock stepped back: old time, newer seq

    response = callers.client("owner").post("/v1/audit/prune", {"days": 30}, format="json")

    assert response.json() == {"deleted": 2, "held_for_siem": False}
    assert AuditEvent.objects.filter(org=callers.org, seq__in=[3, 4]).count() == 2
    assert verify_chain(callers.org).ok


def test_tampering_with_the_checkpoint_is_found(callers):
    write_at(callers.org, timezone.now() - timedelta(days=40), 4)
    make_audit_events(callers.org, 2)
    callers.client("owner").post("/v1/audit/prune", {"days": 30}, format="json")
    AuditChain.objects.filter(key=chain_key(callers.org)).update(checkpoint_hash="e" * 64)

    broken = verify_chain(callers.org).broken
    assert (broken.seq, broken.reason) == (5, "prev_hash_mismatch")


@pytest.mark.parametrize("days", [0, -1, 1, 29, "x", 1.5, True, None, 10**9, ""])
def test_prune_with_bad_days_is_a_400_and_deletes_nothing(callers, days):
    write_at(callers.org, timezone.now() - timedelta(days=400), 2)
    response = callers.client("owner").post("/v1/audit/prune", {"days": days}, format="json")
    assert response.status_code == 400
    assert "days" in response.json()["fields"]
    assert AuditEvent.objects.filter(org=callers.org).count() == 2


def test_prune_without_days_is_a_400(callers):
    response = callers.client("owner").post("/v1/audit/prune", {}, format="json")
    assert response.status_code == 400
    assert "days" in response.json()["fields"]


def test_the_operators_floor_keeps_young_rows_whatever_an_owner_asks(callers, settings):
    """Finding 4: an admin deleted all history with {"days": 1}; now only owners prune, and never young rows."""
    write_at(callers.org, timezone.now() - timedelta(days=20), 3)

    for who in ("admin", "owner"):
        refused = callers.client(who).post("/v1/audit/prune", {"days": 1}, format="json")
        assert refused.status_code == {"admin": 403, "owner": 400}[who]
    assert "30" in refused.json()["fields"]["days"][0]
    assert AuditEvent.objects.filter(org=callers.org).count() == 3
    with pytest.raises(InvalidRequest, match="out of range"):
        services.prune(org=callers.org, days=20)  # the service holds the floor for every caller

    settings.KEYWARD_AUDIT_MIN_RETENTION_DAYS = 10  # the operator lowers the floor
    assert services.prune(org=callers.org, days=10).deleted == 3
