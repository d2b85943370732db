"""Sign-in throttling under attack: guesses in flight together, addresses that rotate, refunds."""

import json
import threading
import time
from unittest import mock

import pytest
from django.core import cache as cache_module
from django.core.cache import cache
from django.db import connections
from django.test import override_settings
from django_otp.plugins.otp_totp.models import TOTPDevice

from keyward.accounts import services
from keyward.accounts.models import Account, Role, SessionToken, SignInCounter
from keyward.accounts.tasks import prune_sign_in_records
from keyward.audit.models import AuditEvent
from keyward.core.exceptions import RateLimited, Unauthorized
from tests.factories import PASSWORD, make_account, make_org

pytestmark = pytest.mark.django_db

WRONG = "not the password at all"


def login(api, email, password=PASSWORD, **request_extra):
    return api.post("/auth/login", {"email": email, "password": password}, format="json", **request_extra)


def guess(email: str, password: str, ip: str) -> str:
    try:
        services.login(email=email, password=password, totp=None, ip=ip)
    except Unauthorized:
        return "checked"
    except RateLimited:
        return "throttled"
    return "signed_in"


def checked_guesses() -> int:
    return AuditEvent.objects.filter(event_type="account.login_failed", reason_code="invalid_credentials").count()


@override_settings(KEYWARD_LOGIN_FAILURES_PER_ACCOUNT=3)
@pytest.mark.parametrize("email", ["victim@example.com", "nobody@example.com"], ids=["known", "unknown"])
def test_guesses_in_flight_together_check_at_most_the_limit(monkeypatch, email):
    """Ten guesses arrive while the first is still being checked (nested, so the order is fixed).

    With check-then-record, none of them had failed yet when the next was admitted, so all ten
    were checked; reserving before checking admits exactly the limit.
    """
    make_account(email="victim@example.com")
    pending = [f"guess {n} {WRONG}" for n in range(2, 11)]
    outcomes: list[str] = []
    hashed: list[str] = []
    real_check, real_dummy = Account.check_password, services._dummy_password_check

    def more_guesses_arrive() -> None:
        while pending:
            outcomes.append(guess(email, pending.pop(0), "198.51.100.1"))

    def check_password(self, raw):
        hashed.append(raw)
        more_guesses_arrive()
        return real_check(self, raw)

    def dummy_check(raw):
        hashed.append(raw)
        more_guesses_arrive()
        real_dummy(raw)

    monkeypatch.setattr(Account, "check_password", check_password)
    monkeypatch.setattr(services, "_dummy_password_check", dummy_check)

    outcomes.append(guess(email, f"guess 1 {WRONG}", "198.51.100.1"))

    assert len(hashed) == 3
    assert sorted(outcomes) == ["checked"] * 3 + ["throttled"] * 7
    assert checked_guesses() == 3


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_concurrent_wrong_guesses_on_postgresql_check_at_most_the_limit(settings):
    """40 threads guess at once (real argon2, real audit writes); at most 5 passwords are checked."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.Argon2PasswordHasher"]
    settings.KEYWARD_LOGIN_FAILURES_PER_ACCOUNT = 5
    victim = make_account(make_org("Victim"), Role.OWNER)
    threads_count = 40
    barrier = threading.Barrier(threads_count)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def attempt(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            outcomes.append(guess(victim.email, f"guess {n} {WRONG}", f"198.51.100.{n}"))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert outcomes.count("checked") == 5
    assert outcomes.count("throttled") == threads_count - 5
    assert checked_guesses() == 5


@override_settings(KEYWARD_LOGIN_FAILURES_PER_IP=3)
def test_ipv6_addresses_count_per_64(api):
    """One IPv6 host owns a /64: rotating through it must not reset the per-address limit."""
    for n in range(1, 4):
        assert login(api, f"spray{n}@example.com", WRONG, REMOTE_ADDR=f"2001:db8:0:0::{n}").status_code == 401

    same_64 = login(api, "spray9@example.com", WRONG, REMOTE_ADDR="2001:db8::ffff:1")
    next_64 = login(api, "spray9@example.com", WRONG, REMOTE_ADDR="2001:db8:0:1::1")

    assert same_64.status_code == 429
    assert next_64.status_code == 401


@override_settings(KEYWARD_LOGIN_FAILURES_PER_IP=3)
def test_ipv4_addresses_still_count_one_by_one(api):
    for n in range(1, 4):
        assert login(api, f"spray{n}@example.com", WRONG, REMOTE_ADDR="192.0.2.1").status_code == 401
    assert login(api, "spray9@example.com", WRONG, REMOTE_ADDR="192.0.2.1").status_code == 429
    assert login(api, "spray9@example.com", WRONG, REMOTE_ADDR="192.0.2.2").status_code == 401


@override_settings(KEYWARD_LOGIN_FAILURES_PER_IP=2, KEYWARD_LOGIN_FAILURES_PER_ACCOUNT=2)
def test_right_passwords_give_their_reservation_back(api):
    """Successful sign-ins reserve an attempt too; they must not use up the address's limit."""
    make_account(email="busy@example.com")
    for _ in range(5):
        assert login(api, "busy@example.com", REMOTE_ADDR="192.0.2.10").status_code == 200
    assert login(api, "busy@example.com", WRONG, REMOTE_ADDR="192.0.2.10").status_code == 401


@override_settings(KEYWARD_LOGIN_FAILURES_PER_ACCOUNT=2)
def test_refused_attempts_do_not_extend_the_count(api):
    """A 429 checked nothing, so it gives its reservation back: the counter stays at the limit."""
    make_account(email="locked@example.com")
    for _ in range(2):
        login(api, "locked@example.com", WRONG)
    statuses = [login(api, "locked@example.com", WRONG).status_code for _ in range(5)]

    assert statuses == [429] * 5
    assert checked_guesses() == 2


@override_settings(KEYWARD_LOGIN_FAILURES_PER_ACCOUNT=2)
def test_the_first_step_of_a_2fa_sign_in_is_not_a_failure(api):
    account = make_account(email="mfa@example.com")
    TOTPDevice.objects.create(user=account, confirmed=True)
    for _ in range(4):
        response = login(api, "mfa@example.com")
        assert (response.status_code, response.json()["error"]) == (401, "totp_required")


@override_settings(KEYWARD_LOGIN_FAILURES_PER_ACCOUNT=2)
def test_wrong_second_factors_count_as_failures(api):
    account = make_account(email="mfa@example.com")
    TOTPDevice.objects.create(user=account, confirmed=True)
    body = {"email": "mfa@example.com", "password": PASSWORD, "totp": "000000"}
    statuses = [api.post("/auth/login", body, format="json").status_code for _ in range(3)]
    assert statuses == [401, 401, 429]


def test_clients_behind_one_proxy_are_throttled_one_by_one(api, settings):
    """With the proxy's hop trusted, one client's failures do not lock out everyone behind the proxy."""
    settings.KEYWARD_TRUSTED_PROXY_HOPS = 1
    make_account(email="legit@example.com")
    for n in range(settings.KEYWARD_LOGIN_FAILURES_PER_IP):
        login(api, f"nobody{n}@example.com", WRONG, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.66")

    attacker = login(api, "nobody@example.com", WRONG, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.66")
    legit = login(api, "legit@example.com", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.7")

    assert attacker.status_code == 429
    assert legit.status_code == 200


UNREACHABLE_REDIS = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
}


def lock_out(api, email: str) -> None:
    for n in range(5):
        assert login(api, email, f"{WRONG} {n}").status_code == 401
    assert login(api, email).status_code == 429


def test_a_lockout_survives_a_cache_flush(api):
    """Finding 5: after a Redis flush or restart, the locked account's password worked at once."""
    victim = make_account(email="victim@example.com")
    lock_out(api, victim.email)

    cache.clear()  # what FLUSHDB or a Redis restart does to anything kept there

    response = login(api, victim.email)
    assert (response.status_code, response.json()["error"]) == (429, "rate_limited")
    assert int(response["Retry-After"]) >= 1
    assert not SessionToken.objects.exists()


def test_sign_in_keeps_working_and_refusing_while_redis_is_down(api):
    """Finding 3: with Redis down /auth/login raised redis.ConnectionError (500). It no longer needs Redis."""
    victim, other = make_account(email="victim@example.com"), make_account(email="other@example.com")
    with override_settings(CACHES=UNREACHABLE_REDIS):
        cache_module.caches.close_all()
        assert login(api, other.email).status_code == 200
        lock_out(api, victim.email)
    assert SessionToken.objects.filter(account=other).count() == 1
    assert not SessionToken.objects.filter(account=victim).exists()


def test_only_hashes_of_what_was_typed_are_counted(api):
    login(api, "a pasted password by mistake", WRONG)
    stored = json.dumps(list(SignInCounter.objects.values()))
    assert "pasted" not in stored
    assert SignInCounter.objects.filter(kind="account").count() == 1


def test_past_windows_are_pruned(api, settings):
    make_account(email="victim@example.com")
    login(api, "victim@example.com", WRONG)
    assert prune_sign_in_records.delay().get() == {"counters": 0, "pending_signups": 0}  # the window is open

    with mock.patch("keyward.accounts.throttle.time.time", return_value=time.time() + 3600):
        assert prune_sign_in_records.delay().get()["counters"] == 2  # the account's and the address's
    assert not SignInCounter.objects.exists()


def test_the_counter_statements_name_the_models_table():
    """throttle.py spells its SQL out in full; a renamed table must fail here, not at sign-in."""
    assert SignInCounter._meta.db_table == "accounts_signincounter"
