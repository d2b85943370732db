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
