"""The outbox: signed webhooks to a real local receiver, retries with backoff, parking, the sweep."""

import hashlib
import hmac
import json
import logging
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from keyward.approvals import decisions
from keyward.outbox import services
from keyward.outbox.models import MessageStatus, OutboxMessage
from keyward.outbox.tasks import deliver_outbox_message, sweep_outbox
from keyward.outbox.webhooks import SIGNATURE_HEADER
from keyward.policies.models import Effect, Policy
from tests import local_http

pytestmark = pytest.mark.django_db

local_server = local_http.local_server
loopback_only = local_http.loopback_only
SECRET = "whsec-test-0123456789abcdef"


def verify_signature(headers: dict, body: bytes, secret: str) -> bool:
    """What a receiver does: recompute the HMAC over `<t>.<raw body>` and compare in constant time."""
    parts = dict(item.split("=", 1) for item in headers[SIGNATURE_HEADER].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


@pytest.fixture
def receiver(local_server, loopback_only):
    server = local_server()
    server.respond("/hook", status=204)
    return server


@pytest.fixture
def hooked(callers, receiver):
    decisions.set_webhook(callers.org, url=receiver.url("/hook"), secret=SECRET)
    return receiver


def test_a_new_approval_reaches_the_webhook_signed(callers, hooked, parked):
    assert hooked.count("/hook") == 1
    _method, _path, headers = hooked.requests[0]
    body = hooked.bodies[0]
    assert verify_signature(headers, body, SECRET)
    assert not verify_signature(headers, body, "another secret")
    payload = json.loads(body)
    assert payload["type"] == "approval.requested"
    assert payload["approval_id"] == parked.approval_id
    assert headers["X-Keyward-Event-Id"].startswith("outbox-")
    assert SECRET not in json.dumps(payload)


def test_a_failing_receiver_is_retried_with_backoff_then_recovers(callers, hooked, parked):
    message = OutboxMessage.objects.get(kind="approval_webhook")
    OutboxMessage.objects.filter(pk=message.pk).update(status=MessageStatus.PENDING)
    hooked.respond("/hook", status=503)

    assert services.deliver(message.pk) == MessageStatus.PENDING
    message.refresh_from_db()
    assert (message.attempts, message.last_error) == (2, "http_503")
    assert message.next_attempt_at > timezone.now()
    assert services.due_messages() == []  # not due yet: backing off

    hooked.respond("/hook", status=200)
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert sweep_outbox() == 1
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED


def test_a_broker_outage_costs_issuance_one_attempt_and_the_sweep_delivers(
    callers, hooked, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    """Redis down: approvals still open, the broker is tried once (then paused), and nothing is lost."""
    from kombu.exceptions import OperationalError

    from tests.approvals.conftest import WRITE, World, allow, make_agent, make_provider

    attempts = []

    def broker_down(*args, **kwargs):
        attempts.append(kwargs)
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(deliver_outbox_message, "apply_async", broker_down)
    allow(callers.org, provider="stripe")
    Policy.objects.create(org=callers.org, provider="stripe", scope="charges:write", effect=Effect.REQUIRE_APPROVAL)
    world = World(callers.org, make_agent(callers.org), make_provider(callers.org), APIClient())
    users = [f"user-{n}@example.com" for n in range(3)]  # three people: three approvals, three webhooks
    with caplog.at_level(logging.WARNING), django_capture_on_commit_callbacks(execute=True):
        answers = [world.ask(WRITE, token=world.user_token(sub=user)).status_code for user in users]

    assert answers == [202, 202, 202]
    assert [attempt["retry"] for attempt in attempts] == [False]  # one quick refusal, no retries, then paused
    assert "the sweep will pick it up" in caplog.text
    assert hooked.count("/hook") == 0
    assert OutboxMessage.objects.filter(status=MessageStatus.PENDING).count() == 6  # an email and a webhook each

    monkeypatch.undo()
    assert sweep_outbox() == 6
    assert hooked.count("/hook") == 3
    assert not OutboxMessage.objects.exclude(status=MessageStatus.DELIVERED).exists()


def test_a_4xx_parks_the_message_and_an_operator_can_retry_it(
    callers, hooked, parked, django_capture_on_commit_callbacks
):
    message = OutboxMessage.objects.get(kind="approval_webhook")
    OutboxMessage.objects.filter(pk=message.pk).update(status=MessageStatus.PENDING)
    hooked.respond("/hook", status=410)
    assert services.deliver(message.pk) == MessageStatus.PARKED

    hooked.respond("/hook", status=204)
    message.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        services.retry_parked(message)
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED


def test_attempts_are_bounded(callers, hooked, parked):
    message = OutboxMessage.objects.get(kind="approval_webhook")
    OutboxMessage.objects.filter(pk=message.pk).update(status=MessageStatus.PENDING, attempts=0)
    hooked.respond("/hook", status=500)
    for _ in range(services.MAX_ATTEMPTS):
        OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
        services.deliver(message.pk)
    message.refresh_from_db()
    assert (message.status, message.attempts) == (MessageStatus.PARKED, services.MAX_ATTEMPTS)


def test_delivered_messages_are_never_sent_again(callers, hooked, parked):
    message = OutboxMessage.objects.get(kind="approval_webhook")
    before = hooked.count("/hook")
    assert services.deliver(message.pk) == MessageStatus.DELIVERED
    assert hooked.count("/hook") == before


def test_backoff_grows_and_is_capped():
    assert services.backoff(1) <= timedelta(seconds=services.BASE_BACKOFF_SECONDS)
    assert services.backoff(30) <= timedelta(seconds=services.MAX_BACKOFF_SECONDS)
    assert services.backoff(4) > timedelta(seconds=services.BASE_BACKOFF_SECONDS)


def test_the_webhook_secret_is_sealed_and_never_shown(callers, hooked):
    from keyward.approvals.models import ApprovalWebhook

    webhook = ApprovalWebhook.objects.get(org=callers.org)
    assert SECRET.encode() not in bytes(webhook.ciphertext)
    shown = callers.client("admin").get("/v1/approvals/webhook")
    assert shown.status_code == 200
    assert SECRET not in shown.content.decode()
    assert "/hook" not in shown.content.decode()
    assert shown.json()["host"] == "127.0.0.1"


def test_webhook_endpoint_matrix(callers, receiver):
    from tests.permissions import assert_permission_matrix

    assert_permission_matrix(
        callers,
        "PUT",
        "/v1/approvals/webhook",
        {"anonymous": 401, "other_org": 200, "viewer": 403, "admin": 200, "owner": 200},
        data={"url": receiver.url("/hook"), "secret": SECRET},
    )
    short = callers.client("admin").put(
        "/v1/approvals/webhook", {"url": receiver.url("/hook"), "secret": "x"}, format="json"
    )
    assert short.status_code == 400
    assert callers.client("admin").delete("/v1/approvals/webhook").status_code == 204
    assert callers.client("admin").get("/v1/approvals/webhook").status_code == 404
