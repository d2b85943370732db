"""TOTP replay: a code is accepted once, whether it is replayed later or raced in parallel.

The clock django-otp reads is pinned (`pinned_clock`), so the codes are computed, never waited for.
"""

import threading

import pytest
from django.db import connections
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from keyward.accounts.models import Role, SessionToken
from tests.factories import PASSWORD, make_account, make_org, make_session_token
from tests.security.expect import Baseline, refused
from tests.security.otp import STEP, code_at, pinned_otp_clock

pytestmark = pytest.mark.django_db


@pytest.fixture
def pinned_clock():
    with pinned_otp_clock() as clock:
        yield clock


class TwoFactorAccount:
    """An owner who enabled TOTP through the API at the clock's current step."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.account = make_account(make_org("Totp Org"), Role.OWNER)
        self.session = make_session_token(self.account)
        client = self.client()
        setup = client.post("/auth/2fa/setup")
        assert setup.status_code == 200, setup.content
        self.key = TOTPDevice.objects.get(user=self.account).key
        self.enable_code = code_at(self.key, clock.time.return_value)
        assert client.post("/auth/2fa/enable", {"code": self.enable_code}, format="json").status_code == 204

    def client(self) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.session}")
        return client

    def advance(self, steps: int = 1) -> str:
        """Move the clock on by whole steps; the code of the new step."""
        self.clock.time.return_value += steps * STEP
        TOTPDevice.objects.update(throttling_failure_timestamp=None, throttling_failure_count=0)
        return code_at(self.key, self.clock.time.return_value)

    def login(self, code: str | None):
        body = {"email": self.account.email, "password": PASSWORD, **({"totp": code} if code else {})}
        return APIClient().post("/auth/login", body, format="json")


@pytest.fixture
def two_factor(pinned_clock) -> TwoFactorAccount:
    return TwoFactorAccount(pinned_clock)


def assert_replay_refused(two_factor: TwoFactorAccount, response, before: Baseline, sessions: int) -> None:
    row = refused(
        response,
        401,
        "totp_required",
        before=before,
        chain=two_factor.account.org,
        event_type="account.login_failed",
        outcome="failure",
    )
    assert row.detail == {"cause": "second_factor_wrong"}
    assert "token" not in response.json()
    assert SessionToken.objects.filter(account=two_factor.account).count() == sessions


def test_a_code_signs_in_once_and_its_replay_is_refused(two_factor):
    code = two_factor.advance()
    assert two_factor.login(code).status_code == 200
    sessions = SessionToken.objects.filter(account=two_factor.account).count()
    before = Baseline.take()

    assert_replay_refused(two_factor, two_factor.login(code), before, sessions)


def test_the_code_that_enabled_2fa_cannot_sign_in(two_factor):
    sessions = SessionToken.objects.filter(account=two_factor.account).count()
    before = Baseline.take()
    assert_replay_refused(two_factor, two_factor.login(two_factor.enable_code), before, sessions)


def test_an_older_code_is_refused_once_a_newer_one_was_used(two_factor):
    old = code_at(two_factor.key, two_factor.clock.time.return_value + STEP)
    newer = two_factor.advance(2)
    assert two_factor.login(newer).status_code == 200
    sessions = SessionToken.objects.filter(account=two_factor.account).count()
    before = Baseline.take()

    assert_replay_refused(two_factor, two_factor.login(old), before, sessions)


def test_a_spent_code_cannot_turn_2fa_off(two_factor):
    code = two_factor.advance()
    assert two_factor.login(code).status_code == 200
    before = Baseline.take()

    response = two_factor.client().post("/auth/2fa/disable", {"code": code}, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_totp_code"
    assert TOTPDevice.objects.filter(user=two_factor.account, confirmed=True).exists()
    assert before.new_audit_rows() == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_one_code_raced_by_many_sign_ins_is_accepted_exactly_once(pinned_clock, settings):
    settings.KEYWARD_LOGIN_FAILURES_PER_ACCOUNT = 100  # every racer reaches the code check
    two_factor = TwoFactorAccount(pinned_clock)
    code = two_factor.advance()
    sessions_before = SessionToken.objects.filter(account=two_factor.account).count()
    racers = 8
    barrier = threading.Barrier(racers)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def race() -> None:
        try:
            barrier.wait(timeout=30)
            statuses.append(two_factor.login(code).status_code)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert sorted(statuses) == [200] + [401] * (racers - 1)
    assert SessionToken.objects.filter(account=two_factor.account).count() == sessions_before + 1
