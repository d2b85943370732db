from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from keyward.accounts.models import Role
from keyward.audit.models import AuditEvent
from keyward.siem import services
from keyward.siem.models import SiemCursor
from keyward.tenancy.models import Org
from tests import local_http
from tests.factories import make_account, make_org
from tests.siem.receiver import SiemReceiver

loopback_only = local_http.loopback_only
local_server = local_http.local_server
fake_dns = local_http.fake_dns

SECRET = "siem-test-secret-0123456789abcdef-xyz"
PLATFORM_SECRET = "platform-siem-secret-fedcba9876543210-abc"


@pytest.fixture
def receivers():
    """A factory of SIEM receivers on 127.0.0.1; each is stopped after the test."""
    made: list[SiemReceiver] = []

    def start(secret: str = SECRET) -> SiemReceiver:
        receiver = SiemReceiver(secret)
        made.append(receiver)
        return receiver

    yield start
    for receiver in made:
        receiver.stop()


@pytest.fixture
def siem(receivers, loopback_only) -> SiemReceiver:
    return receivers()


@pytest.fixture
def streaming(callers, siem) -> SiemReceiver:
    """The matrix org streams to `siem` (its own destination); nothing delivered yet."""
    services.set_destination(callers.org, url=siem.url(), secret=SECRET, actor=callers.owner)
    return siem


def make_due() -> None:
    """Time passes: every backoff is over."""
    SiemCursor.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def chain_ids(org: Org | None) -> list[str]:
    """Every retained row of a chain as the stable ids a SIEM receives, in seq order."""
    rows = AuditEvent.objects.filter(org=org) if org is not None else AuditEvent.objects.filter(org__isnull=True)
    prefix = f"org:{org.pk}" if org is not None else "platform"
    return [f"{prefix}:{seq}" for seq in rows.order_by("seq").values_list("seq", flat=True)]


def streamed_org(siem: SiemReceiver) -> tuple[Org, object]:
    """A new org (an owner and an admin) streaming its audit log to `siem`."""
    org = make_org("Streamed")
    owner = make_account(org, Role.OWNER)
    make_account(org, Role.ADMIN)
    services.set_destination(org, url=siem.url(), secret=SECRET, actor=owner)
    return org, owner


def caught_up(receiver: SiemReceiver, org: Org) -> Callable[[], bool]:
    """True once `receiver` has every row the org's chain holds now, in order."""
    expected = chain_ids(org)
    return lambda: receiver.accepted_ids[: len(expected)] == expected
