"""The outbox under hostile or broken conditions: a message that cannot be delivered, a rebinding
webhook host, and secrets that must stay out of payloads, logs and audit rows."""

import json
import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from keyward.approvals import decisions
from keyward.approvals.models import ApprovalWebhook
from keyward.audit.models import AuditEvent
from keyward.outbox import services
from keyward.outbox.models import MessageStatus, OutboxMessage
from keyward.outbox.tasks import sweep_outbox
from tests import local_http

pytestmark = pytest.mark.django_db

local_server = local_http.local_server
loopback_only = local_http.loopback_only
fake_dns = local_http.fake_dns
SECRET = "whsec-hardening-0123456789abcdef"
PUBLIC_IP = "93.184.216.34"  # only ever resolved to here, never connected to


@pytest.fixture
def receiver(local_server, loopback_only):
    server = local_server()
    server.respond("/hook", status=204)
    return server


def test_a_message_whose_handler_crashes_backs_off_and_never_blocks_the_sweep(callers, receiver, parked):
    """A webhook whose seal no longer opens (e.g. a lost master key) fails the same way every time."""
    decisions.set_webhook(callers.org, url=receiver.url("/hook"), secret=SECRET)
    ApprovalWebhook.objects.update(ciphertext=b"\0" * 64)
    now = timezone.now()
    broken = services.enqueue(callers.org, "approval_webhook", {"type": "approval.requested"})
    OutboxMessage.objects.filter(pk=broken.pk).update(next_attempt_at=now - timedelta(minutes=1))
    email = OutboxMessage.objects.get(kind="approval_email")
    OutboxMessage.objects.filter(pk=email.pk).update(status=MessageStatus.PENDING, next_attempt_at=now)

    assert sweep_outbox() == 2  # the broken one first (oldest), then the email
    email.refresh_from_db()
    broken.refresh_from_db()
    assert email.status == MessageStatus.DELIVERED
    assert (broken.status, broken.attempts, broken.last_error) == (MessageStatus.PENDING, 1, "error:DecryptionError")
    assert broken.next_attempt_at > timezone.now()
    for _ in range(services.MAX_ATTEMPTS):
        OutboxMessage.objects.filter(pk=broken.pk).update(next_attempt_at=timezone.now())
        services.deliver(broken.pk)
    broken.refresh_from_db()
    assert broken.status == MessageStatus.PARKED


def test_a_webhook_host_that_rebinds_to_metadata_is_refused_at_connect_and_parked(
    callers, receiver, fake_dns, parked, settings
):
    settings.KEYWARD_ALLOW_PRIVATE_URLS = False
    fake_dns["hooks.test"] = [[PUBLIC_IP], ["169.254.169.254"]]
    decisions.set_webhook(callers.org, url=f"http://hooks.test:{receiver.port}/hook", secret=SECRET)
    message = services.enqueue(callers.org, "approval_webhook", {"type": "approval.requested"})
    assert services.deliver(message.pk) == MessageStatus.PARKED
    message.refresh_from_db()
    assert message.last_error == "blocked:url_destination_not_allowed"
    assert receiver.count("/hook") == 0


def test_a_redirecting_receiver_is_not_followed(callers, receiver, parked):
    receiver.respond("/hook", status=302, headers={"Location": "http://169.254.169.254/latest/meta-data"})
    decisions.set_webhook(callers.org, url=receiver.url("/hook"), secret=SECRET)
    message = services.enqueue(callers.org, "approval_webhook", {"type": "approval.requested"})
    assert services.deliver(message.pk) == MessageStatus.PARKED
    assert receiver.count("/hook") == 1


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest", "ftp://example.com/", "not a url", "https://[::1"])
def test_a_webhook_url_the_guard_refuses_is_400(callers, url, settings):
    settings.KEYWARD_ALLOW_PRIVATE_URLS = False
    response = callers.client("admin").put("/v1/approvals/webhook", {"url": url, "secret": SECRET}, format="json")
    assert response.status_code == 400
    assert "url" in response.json()["fields"]
    assert not ApprovalWebhook.objects.exists()


@pytest.mark.parametrize(
    "body",
    [{"url": 5, "secret": SECRET}, {"url": "https://x.example/", "secret": ["s"]}, {"url": "https://x.example/"}],
)
def test_a_malformed_webhook_body_is_400(callers, body):
    response = callers.client("admin").put("/v1/approvals/webhook", body, format="json")
    assert response.status_code == 400
    assert not ApprovalWebhook.objects.exists()


def test_the_secret_and_url_path_stay_out_of_answers_audit_payloads_and_logs(callers, receiver, parked, caplog):
    url = receiver.url("/hook?token=path-secret-token")
    with caplog.at_level(logging.DEBUG):
        put = callers.client("admin").put("/v1/approvals/webhook", {"url": url, "secret": SECRET}, format="json")
        message = services.enqueue(callers.org, "approval_webhook", {"type": "approval.requested"})
        receiver.respond("/hook", status=500)
        services.deliver(message.pk)
    assert put.status_code == 200
    seen = [
        put.content.decode(),
        json.dumps(list(AuditEvent.objects.values("detail", "reason_code"))),
        json.dumps(list(OutboxMessage.objects.values("payload", "last_error"))),
        caplog.text,
    ]
    for text in seen:
        assert SECRET not in text
        assert "path-secret-token" not in text
