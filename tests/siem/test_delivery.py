"""SIEM delivery from the audit table: signed batches in seq order, backoff, parking, the sweep."""

import json
import logging
import socket
import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from keyward.audit.export import exported_rows
from keyward.audit.models import AuditChain, AuditEvent
from keyward.audit.writer import audit_event_recorded, record_event
from keyward.core import queueing
from keyward.net import outbound
from keyward.siem import delivery, services
from keyward.siem.delivery import RunOutcome
from keyward.siem.models import CursorState, DestinationKind, SiemCursor
from keyward.siem.tasks import deliver_siem, sweep_siem
from tests.factories import make_audit_events, make_org
from tests.siem.conftest import PLATFORM_SECRET, SECRET, chain_ids, make_due
from tests.siem.receiver import signature_is_valid

pytestmark = pytest.mark.django_db

ORG = DestinationKind.ORG
PLATFORM = DestinationKind.PLATFORM


def cursor_of(org, kind=ORG) -> SiemCursor:
    return SiemCursor.objects.get(destination=kind, chain=f"org:{org.pk}" if org else "platform")


def test_committed_events_arrive_signed_in_order_with_stable_ids(
    callers, streaming, django_capture_on_commit_callbacks
):
    org = callers.org
    with django_capture_on_commit_callbacks(execute=True):
        make_audit_events(org, 3)

    assert streaming.accepted_ids == chain_ids(org)
    assert len(streaming.accepted_ids) == 4  # siem.destination_set, then the three events
    [batch] = streaming.received
    assert (batch.signature_ok, batch.status) == (True, 200)
    assert batch.event_id == f"org:{org.pk}:1-4"
    assert not signature_is_valid(
        {"X-Keyward-Signature": f"t={int(timezone.now().timestamp())},v1=00"}, batch.body, SECRET.encode()
    )
    assert not signature_is_valid({"X-Keyward-Signature": "t=1,v1=00"}, batch.body, SECRET.encode())
    exported = list(exported_rows(AuditEvent.objects.filter(org=org).order_by("seq")))
    assert batch.events == [{**row, "id": f"org:{org.pk}:{row['seq']}"} for row in exported]
    assert json.loads(batch.body) == {"events": batch.events}

    with django_capture_on_commit_callbacks(execute=True):
        make_audit_events(org, 2)
    assert [item.event_id for item in streaming.received] == [f"org:{org.pk}:1-4", f"org:{org.pk}:5-6"]
    assert streaming.accepted_ids == chain_ids(org)
    assert streaming.duplicates == 0
    assert cursor_of(org).last_seq == 6


def test_nothing_is_sent_for_a_transaction_that_rolled_back(callers, streaming, django_capture_on_commit_callbacks):
    seen = []

    def listener(sender, **facts):
        seen.append((facts["chain"], facts["seq"]))

    audit_event_recorded.connect(listener)
    try:
        with (  # noqa: PT012 - the row and the failure belong to one transaction
            django_capture_on_commit_callbacks(execute=True),
            pytest.raises(RuntimeError),
            transaction.atomic(),
        ):
            record_event(org=callers.org, event_type="test.event", outcome="success")
            raise RuntimeError("the action failed")
        assert seen == []
        assert streaming.received == []
        with django_capture_on_commit_callbacks(execute=True):
            event = record_event(org=callers.org, event_type="test.event", outcome="success")
        assert seen == [(f"org:{callers.org.pk}", event.seq)]
    finally:
        audit_event_recorded.disconnect(listener)


def test_a_backlog_goes_in_full_batches_and_one_event_alone(callers, streaming, monkeypatch):
    org = callers.org
    make_audit_events(org, 250)  # not committed yet in this test: nothing woke a delivery
    monkeypatch.setattr(delivery, "MAX_BATCHES_PER_RUN", 2)

    first = delivery.deliver(ORG, org.pk)
    assert (first.outcome, first.delivered, first.batches) == (RunOutcome.MORE, 200, 2)
    second = delivery.deliver(ORG, org.pk)
    assert (second.outcome, second.delivered, second.batches) == (RunOutcome.UP_TO_DATE, 51, 1)
    assert [len(item.ids) for item in streaming.received] == [100, 100, 51]
    assert [item.event_id for item in streaming.received] == [
        f"org:{org.pk}:1-100",
        f"org:{org.pk}:101-200",
        f"org:{org.pk}:201-251",
    ]

    make_audit_events(org, 1)
    assert delivery.deliver(ORG, org.pk).delivered == 1
    assert streaming.received[-1].event_id == f"org:{org.pk}:252-252"
    assert streaming.accepted_ids == chain_ids(org)
    assert delivery.deliver(ORG, org.pk).outcome == RunOutcome.UP_TO_DATE
    assert len(streaming.received) == 4


def test_a_failing_siem_loses_and_reorders_nothing(callers, streaming):
    """500s, a 429 and a 503 while new events keep coming: once it recovers, every event is there, in order."""
    org = callers.org
    make_audit_events(org, 3)
    streaming.answer_next(500, 429, 503)

    assert delivery.deliver(ORG, org.pk).outcome == RunOutcome.BACKING_OFF
    cursor = cursor_of(org)
    assert (cursor.state, cursor.attempts, cursor.last_error, cursor.last_seq) == (
        CursorState.BACKING_OFF,
        1,
        "http_500",
        0,
    )
    assert cursor.next_attempt_at > timezone.now()
    assert delivery.deliver(ORG, org.pk).outcome == RunOutcome.NOT_DUE  # waits out its backoff
    assert delivery.due_cursors() == []
    assert sweep_siem() == 0
    assert len(streaming.received) == 1

    for failures in (2, 3):
        make_audit_events(org, 2)  # the log keeps growing during the outage
        make_due()
        assert sweep_siem() == 1
        assert cursor_of(org).attempts == failures
    assert streaming.statuses() == [500, 429, 503]
    assert all(item.ids[0] == f"org:{org.pk}:1" for item in streaming.received)  # each retry starts at the same row

    make_due()
    assert sweep_siem() == 1
    assert streaming.statuses() == [500, 429, 503, 200]
    assert streaming.accepted_ids == chain_ids(org)
    assert len(streaming.accepted_ids) == 8
    cursor = cursor_of(org)
    assert (cursor.state, cursor.attempts, cursor.last_error, cursor.last_seq) == (CursorState.OK, 0, "", 8)


def test_an_answer_lost_to_a_timeout_is_resent_and_the_receiver_drops_the_repeat(callers, streaming, monkeypatch):
    org = callers.org
    make_audit_events(org, 2)
    monkeypatch.setattr(outbound, "TOTAL_TIMEOUT", 0.5)
    release = streaming.hold_next()
    try:
        result = delivery.deliver(ORG, org.pk)
    finally:
        release.set()
    assert (result.outcome, result.error) == (RunOutcome.BACKING_OFF, "unreachable:ReadTimeout")
    make_due()
    assert delivery.deliver(ORG, org.pk).outcome == RunOutcome.UP_TO_DATE
    assert streaming.duplicates == 3
    assert streaming.accepted_ids == chain_ids(org)


def test_an_unreachable_siem_backs_off(callers, siem):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    services.set_destination(
        callers.org, url=f"http://127.0.0.1:{closed_port}/siem", secret=SECRET, actor=callers.owner
    )
    result = delivery.deliver(ORG, callers.org.pk)
    assert result.outcome == RunOutcome.BACKING_OFF
    assert result.error.startswith(("unreachable:", "failed:"))
    assert cursor_of(callers.org).last_seq == 0


def test_backoff_grows_with_jitter_and_is_capped():
    assert timedelta(seconds=delivery.BASE_BACKOFF_SECONDS / 2) <= delivery.backoff(1)
    assert delivery.backoff(1) <= timedelta(seconds=delivery.BASE_BACKOFF_SECONDS)
    assert delivery.backoff(6) > timedelta(seconds=delivery.BASE_BACKOFF_SECONDS * 8)
    assert delivery.backoff(60) <= timedelta(seconds=delivery.MAX_BACKOFF_SECONDS)


def test_a_4xx_parks_the_stream_until_someone_retries(callers, streaming, django_capture_on_commit_callbacks):
    org = callers.org
    make_audit_events(org, 2)
    streaming.answer_next(400)

    result = delivery.deliver(ORG, org.pk)
    assert (result.outcome, result.error) == (RunOutcome.PARKED, "http_400")
    cursor = cursor_of(org)
    assert (cursor.state, cursor.last_seq, cursor.last_error) == (CursorState.PARKED, 0, "http_400")
    assert cursor.parked_at is not None
    parked_row = AuditEvent.objects.get(org=org, event_type="siem.delivery_parked")
    assert parked_row.detail == {"host": "127.0.0.1", "error": "http_400", "first_seq": 1, "last_seq": 3}

    with django_capture_on_commit_callbacks(execute=True):
        make_audit_events(org, 1)  # a parked stream is not woken by new events
    make_due()
    assert sweep_siem() == 0
    assert delivery.deliver(ORG, org.pk, force=True).outcome == RunOutcome.PARKED
    assert len(streaming.received) == 1

    shown = callers.client("admin").get("/v1/siem").json()
    assert (shown["state"], shown["last_error"], shown["delivered_through"]) == ("parked", "http_400", 0)
    assert shown["pending_events"] == shown["head"] == 5

    with django_capture_on_commit_callbacks(execute=True):
        retried = callers.client("admin").post("/v1/siem/retry")
    assert retried.status_code == 200
    assert streaming.accepted_ids == chain_ids(org)
    assert streaming.statuses() == [400, 200]
    row = AuditEvent.objects.get(org=org, event_type="siem.delivery_retried")
    assert (row.actor_name, row.detail["previous_state"], row.detail["error"]) == (
        callers.admin.email,
        "parked",
        "http_400",
    )
    assert callers.client("admin").get("/v1/siem").json()["state"] == "ok"
    again = callers.client("admin").post("/v1/siem/retry")
    assert (again.status_code, again.json()["error"]) == (409, "siem_delivery_ok")


def test_the_ssrf_guard_applies_when_delivering(callers, streaming, settings):
    """A URL that was fine when saved is checked again at connect time (DNS or settings change)."""
    make_audit_events(callers.org, 1)
    settings.KEYWARD_ALLOW_PRIVATE_URLS = False
    result = delivery.deliver(ORG, callers.org.pk)
    assert (result.outcome, result.error) == (RunOutcome.PARKED, "blocked:url_destination_not_allowed")
    assert streaming.received == []


def test_the_platform_destination_streams_every_chain_in_its_own_order(callers, receivers, settings, loopback_only):
    platform, own = receivers(PLATFORM_SECRET), receivers(SECRET)
    settings.KEYWARD_SIEM_WEBHOOK_URL, settings.KEYWARD_SIEM_WEBHOOK_SECRET = platform.url(), PLATFORM_SECRET
    services.set_destination(callers.org, url=own.url(), secret=SECRET, actor=callers.owner)
    other = make_org()
    make_audit_events(callers.org, 2)
    make_audit_events(other, 3)
    make_audit_events(None, 2)  # the platform chain (unknown-email sign-ins, superadmin actions)

    assert sweep_siem() == 4  # platform: three chains; the org's own destination: one
    assert all(item.signature_ok for item in platform.received + own.received)
    by_chain: dict[str, list[str]] = {}
    for event_id in platform.accepted_ids:
        by_chain.setdefault(event_id.rsplit(":", 1)[0], []).append(event_id)
    assert by_chain == {
        f"org:{callers.org.pk}": chain_ids(callers.org),
        f"org:{other.pk}": chain_ids(other),
        "platform": chain_ids(None),
    }
    assert own.accepted_ids == chain_ids(callers.org)  # only its own org's events
    assert services.siem_delivered_through(other) == AuditChain.objects.get(key=f"org:{other.pk}").last_seq
    assert "platform" not in json.dumps(callers.client("admin").get("/v1/siem").json())


def test_siem_delivered_through(callers, receivers, settings, loopback_only):
    org, other = callers.org, make_org()
    make_audit_events(org, 3)
    assert services.siem_delivered_through(org) is None  # no SIEM: nothing holds pruning back

    own = receivers()
    services.set_destination(org, url=own.url(), secret=SECRET, actor=callers.owner)
    assert services.siem_delivered_through(org) == 0
    assert services.siem_delivered_through(other) is None
    delivery.deliver(ORG, org.pk)
    assert services.siem_delivered_through(org) == 4

    platform = receivers(PLATFORM_SECRET)
    settings.KEYWARD_SIEM_WEBHOOK_URL, settings.KEYWARD_SIEM_WEBHOOK_SECRET = platform.url(), PLATFORM_SECRET
    assert services.siem_delivered_through(org) == 0  # the platform destination has received nothing yet
    assert services.siem_delivered_through(other) == 0
    assert services.siem_delivered_through(None) == 0
    platform.answer_next(503)
    delivery.deliver(PLATFORM, org.pk)
    assert services.siem_delivered_through(org) == 0
    make_due()
    delivery.deliver(PLATFORM, org.pk)
    make_audit_events(org, 2)
    delivery.deliver(ORG, org.pk)
    assert services.siem_delivered_through(org) == 4  # the lowest of the two: the platform's
    delivery.deliver(PLATFORM, org.pk)
    assert services.siem_delivered_through(org) == 6


def test_a_broker_that_cannot_take_the_task_does_not_fail_the_request(
    callers, streaming, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    from rest_framework.test import APIClient

    from tests.broker.conftest import World, allow, make_agent, make_provider

    world = World(callers.org, make_agent(callers.org), make_provider(callers.org), APIClient())
    allow(callers.org, provider="stripe")
    queued = []

    def broker_down(*args, **kwargs):
        queued.append(args)
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(deliver_siem, "apply_async", broker_down)
    with (
        caplog.at_level(logging.WARNING, logger="keyward.core.queueing"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        first = world.ask()
        second = world.ask()
    assert (first.status_code, second.status_code) == (200, 200)
    assert len(queued) == 1  # after a refusal, waking pauses: the second issuance did not wait on the broker
    assert "the sweep will pick it up" in caplog.text
    assert streaming.received == []

    monkeypatch.undo()
    queueing.resume()  # the pause has run out
    make_due()
    assert sweep_siem() == 1
    assert streaming.accepted_ids == chain_ids(callers.org)
    assert "credential.issued" in {event["event_type"] for event in streaming.received[0].events}


def test_one_delivery_per_stream_at_a_time_without_row_locks(callers, streaming, monkeypatch):
    """Without row locks (SQLite) a process lock stands in; PostgreSQL's row lock is tested in the services pass."""
    monkeypatch.setattr(connection.features, "has_select_for_update_skip_locked", False)
    make_audit_events(callers.org, 1)
    cursor = delivery.ensure_cursor(ORG, callers.org.pk)
    with delivery._claimed(cursor.pk) as held:
        assert held is not None
        assert delivery.deliver(ORG, callers.org.pk).outcome == RunOutcome.BUSY
    assert streaming.received == []
    assert delivery.deliver(ORG, callers.org.pk).outcome == RunOutcome.UP_TO_DATE


def test_without_a_destination_nothing_is_delivered(callers, streaming):
    make_audit_events(callers.org, 1)
    other = make_org()
    make_audit_events(other, 1)
    assert delivery.deliver(ORG, other.pk).outcome == RunOutcome.NO_DESTINATION
    assert delivery.deliver(PLATFORM, callers.org.pk).outcome == RunOutcome.NO_DESTINATION
    assert sweep_siem() == 1
    assert {event_id.rsplit(":", 1)[0] for event_id in streaming.accepted_ids} == {f"org:{callers.org.pk}"}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_row_lock_keeps_one_delivery_per_stream_on_postgresql(callers, siem, monkeypatch):
    from django.db import connections

    monkeypatch.setattr(delivery, "dispatch", lambda *args, **kwargs: False)  # commits wake nothing here
    services.set_destination(callers.org, url=siem.url(), secret=SECRET, actor=callers.owner)
    streaming = siem
    make_audit_events(callers.org, 2)
    release = streaming.hold_next()
    outcomes: list[str] = []

    def first_delivery() -> None:
        try:
            outcomes.append(delivery.deliver(ORG, callers.org.pk).outcome)
        finally:
            connections.close_all()

    worker = threading.Thread(target=first_delivery)
    worker.start()
    try:
        streaming.wait_for(lambda: streaming.received, timeout=10, what="the first delivery's POST")
        assert delivery.deliver(ORG, callers.org.pk).outcome == RunOutcome.BUSY
    finally:
        release.set()
        worker.join(timeout=30)
    assert outcomes == [RunOutcome.UP_TO_DATE]
    assert len(streaming.received) == 1
    assert streaming.accepted_ids == chain_ids(callers.org)


NEW_SECRET = "rotated-siem-secret-0123456789abcdef-new"


def change_destination_during_the_first_batch(monkeypatch, org, owner, url: str) -> None:
    """An owner's PUT /v1/siem lands while a delivery run is sending its first batch."""
    real, calls = delivery.post_signed, []

    def post_then_change(*args, **kwargs):
        real(*args, **kwargs)
        if not calls:
            calls.append(1)
            services.set_destination(org, url=url, secret=NEW_SECRET, actor=owner)

    monkeypatch.setattr(delivery, "post_signed", post_then_change)
    monkeypatch.setattr(delivery, "BATCH_SIZE", 2)


def test_a_run_signs_with_the_secret_set_during_it(callers, streaming, monkeypatch):
    """Rotating the secret mid-run: the receiver switches to the new one, so an old signature would park."""
    org = callers.org
    make_audit_events(org, 5)
    change_destination_during_the_first_batch(monkeypatch, org, callers.owner, streaming.url())
    real_take = streaming._take

    def rotate_receiver_after_first(headers, body):
        answer = real_take(headers, body)
        streaming.secret = NEW_SECRET.encode()
        return answer

    monkeypatch.setattr(streaming, "_take", rotate_receiver_after_first)

    result = delivery.deliver(ORG, org.pk)

    assert (result.outcome, result.error) == (RunOutcome.UP_TO_DATE, "")
    assert all(item.signature_ok for item in streaming.received)
    assert streaming.accepted_ids == chain_ids(org)


def test_a_run_sends_nothing_more_to_a_destination_replaced_during_it(callers, streaming, receivers, monkeypatch):
    org = callers.org
    make_audit_events(org, 5)
    moved = receivers(NEW_SECRET)
    change_destination_during_the_first_batch(monkeypatch, org, callers.owner, moved.url())

    assert delivery.deliver(ORG, org.pk).outcome == RunOutcome.UP_TO_DATE

    assert streaming.accepted_ids == chain_ids(org)[:2]  # only the batch in flight when it changed
    assert moved.accepted_ids == chain_ids(org)[2:]
    assert all(item.signature_ok for item in moved.received)


def test_a_run_stops_when_the_destination_is_removed_during_it(callers, streaming, monkeypatch):
    org = callers.org
    make_audit_events(org, 5)
    real, calls = delivery.post_signed, []

    def post_then_remove(*args, **kwargs):
        real(*args, **kwargs)
        if not calls:
            calls.append(1)
            services.remove_destination(org, actor=callers.owner)

    monkeypatch.setattr(delivery, "post_signed", post_then_remove)
    monkeypatch.setattr(delivery, "BATCH_SIZE", 2)

    assert delivery.deliver(ORG, org.pk).outcome == RunOutcome.NO_DESTINATION
    assert len(streaming.received) == 1


@pytest.mark.parametrize(
    ("allow_private", "rebound_to"),
    [(False, "127.0.0.1"), (False, "10.0.0.7"), (True, "169.254.169.254"), (True, "::ffff:169.254.169.254")],
)
def test_a_name_rebound_after_saving_is_refused_when_connecting(
    callers, siem, fake_dns, settings, allow_private, rebound_to
):
    """DNS rebinding: a public answer when the owner saves, a refused one when delivery connects."""
    settings.KEYWARD_ALLOW_PRIVATE_URLS = False
    fake_dns["siem.test"] = [["93.184.216.34"], [rebound_to]]
    url = f"http://siem.test:{siem.port}/in"
    assert callers.client("owner").put("/v1/siem", {"url": url, "secret": SECRET}, format="json").status_code == 200
    settings.KEYWARD_ALLOW_PRIVATE_URLS = allow_private
    make_audit_events(callers.org, 1)

    result = delivery.deliver(ORG, callers.org.pk)

    assert (result.outcome, result.error) == (RunOutcome.PARKED, "blocked:url_destination_not_allowed")
    assert siem.received == []
