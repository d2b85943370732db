import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from keyward.approvals.models import Approval, ApprovalStatus
from keyward.outbox.models import MessageStatus, OutboxMessage

pytestmark = pytest.mark.django_db


def test_expire_approvals_command(parked):
    Approval.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    out = io.StringIO()
    call_command("expire_approvals", stdout=out)
    assert "Expired 1 approval(s)." in out.getvalue()
    assert Approval.objects.get().status == ApprovalStatus.EXPIRED
    call_command("expire_approvals", "--org", parked.org.slug, stdout=out)
    with pytest.raises(CommandError, match="No org"):
        call_command("expire_approvals", "--org", "nope")


def test_deliver_outbox_command_delivers_due_messages(parked):
    OutboxMessage.objects.update(status=MessageStatus.PENDING, next_attempt_at=timezone.now())
    out = io.StringIO()
    call_command("deliver_outbox", stdout=out)
    assert "1 delivered" in out.getvalue()
    assert OutboxMessage.objects.get().status == MessageStatus.DELIVERED
    out = io.StringIO()
    call_command("deliver_outbox", stdout=out)
    assert "nothing due" in out.getvalue()


def test_deliver_outbox_fails_loudly_when_delivery_fails(parked, monkeypatch):
    from keyward.approvals import notifications
    from keyward.outbox import services

    def broken(message):
        raise services.DeliveryError("smtp:down")

    monkeypatch.setitem(services._handlers, notifications.EMAIL, broken)
    OutboxMessage.objects.update(status=MessageStatus.PENDING, next_attempt_at=timezone.now())
    with pytest.raises(CommandError, match="could not be delivered"):
        call_command("deliver_outbox", stdout=io.StringIO())
    assert OutboxMessage.objects.get().last_error == "smtp:down"


@pytest.mark.parametrize("batches", ["0", "-1"])
def test_deliver_outbox_refuses_a_batch_limit_below_one_rather_than_report_nothing_due(parked, batches):
    OutboxMessage.objects.update(status=MessageStatus.PENDING, next_attempt_at=timezone.now())
    out = io.StringIO()
    with pytest.raises(CommandError, match="--max-batches"):
        call_command("deliver_outbox", "--max-batches", batches, stdout=out)
    assert "nothing due" not in out.getvalue()
    assert OutboxMessage.objects.get().status == MessageStatus.PENDING


def test_deliver_outbox_retry_parked_says_what_it_requeued_and_is_idempotent(parked):
    OutboxMessage.objects.update(status=MessageStatus.PARKED, last_error="http_410")
    out = io.StringIO()
    call_command("deliver_outbox", "--retry-parked", stdout=out)
    assert "Re-queued 1 parked message(s)." in out.getvalue()
    assert "1 delivered" in out.getvalue()
    out = io.StringIO()
    call_command("deliver_outbox", "--retry-parked", stdout=out)
    assert "Re-queued 0 parked message(s)." in out.getvalue()
    assert "nothing due; 0 parked." in out.getvalue()
