import base64
import time
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest
from django_otp.oath import hotp
from django_otp.plugins.otp_totp.models import TOTPDevice

from keyward.accounts.models import SessionToken
from keyward.accounts.services import verify_totp
from tests.factories import PASSWORD, make_account, make_session_token, sign_up

pytestmark = pytest.mark.django_db

# RFC 6238 Appendix B, SHA-1 column: the seed is the ASCII string "12345678901234567890".
RFC6238_SHA1_VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


@pytest.mark.parametrize(("unix_time", "expected"), RFC6238_SHA1_VECTORS)
def test_rfc6238_vectors_verify_through_the_totp_path(unix_time, expected):
    account = make_account()
    device = TOTPDevice.objects.create(
        user=account, key=b"12345678901234567890".hex(), digits=8, step=30, t0=0, tolerance=0, confirmed=True
    )
    with mock.patch("django_otp.plugins.otp_totp.models.time") as clock:
        clock.time.return_value = unix_time
        assert verify_totp(device, expected) is True
        wrong = f"{(int(expected) + 1) % 10**8:08d}"
        assert verify_totp(device, wrong) is False


def test_rfc6238_vector_rejected_one_step_later():
    account = make_account()
    device = TOTPDevice.objects.create(
        user=account, key=b"12345678901234567890".hex(), digits=8, tolerance=0, confirmed=True
    )
    with mock.patch("django_otp.plugins.otp_totp.models.time") as clock:
        clock.time.return_value = 59 + 30
        assert verify_totp(device, "94287082") is False


def authed(api, token):
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api


def test_full_2fa_lifecycle(api):
    """signup → login → setup → enable → login needs a code → replay refused → disable."""
    signup = sign_up(
        api, org_name="TwoFactor Inc", email="tf@example.com", password="correct horse battery staple"
    ).json()
    first_token = signup["token"]
    login_body = {"email": "tf@example.com", "password": "correct horse battery staple"}
    second_token = api.post("/auth/login", login_body, format="json").json()["token"]
    authed(api, first_token)

    setup = api.post("/auth/2fa/setup").json()
    assert setup["otpauth_uri"].startswith("otpauth://totp/keyward%3Atf%40example.com?")
    assert parse_qs(urlsplit(setup["otpauth_uri"]).query)["secret"] == [setup["secret"]]
    assert setup["qr_svg"].startswith("data:image/svg+xml;base64,")
    assert b"<svg" in base64.b64decode(setup["qr_svg"].split(",", 1)[1])
    key_hex = base64.b32decode(setup["secret"] + "=" * (-len(setup["secret"]) % 8)).hex()
    assert TOTPDevice.objects.get().key == key_hex
    assert api.get("/auth/me").json()["account"]["totp_enabled"] is False

    now = time.time()
    with mock.patch("django_otp.plugins.otp_totp.models.time") as clock:
        clock.time.return_value = now
        enable = api.post("/auth/2fa/enable", {"code": _code(key_hex, now)}, format="json")
        assert enable.status_code == 204
        me = api.get("/auth/me").json()
        assert me["account"]["totp_enabled"] is True
        assert me["session"]["otp_verified"] is True

        # Enabling revoked the other session, but kept this one.
        other = authed(type(api)(), second_token).get("/auth/me")
        assert other.status_code == 401

        no_code = api.post("/auth/login", login_body, format="json")
        assert no_code.status_code == 401
        assert no_code.json()["error"] == "totp_required"

        # The code used to enable is spent; a fresh step's code works exactly once.
        clock.time.return_value = now + 30
        next_code = _code(key_hex, now + 30)
        ok = api.post("/auth/login", {**login_body, "totp": next_code}, format="json")
        assert ok.status_code == 200
        replay = api.post("/auth/login", {**login_body, "totp": next_code}, format="json")
        assert replay.status_code == 401
        assert replay.json()["error"] == "totp_required"

        # The refused replay armed django-otp's back-off (1 s); a real user would simply wait it out.
        TOTPDevice.objects.update(throttling_failure_timestamp=None, throttling_failure_count=0)
        clock.time.return_value = now + 60
        fresh_session = ok.json()["token"]
        disable = authed(api, fresh_session).post(
            "/auth/2fa/disable", {"code": _code(key_hex, now + 60)}, format="json"
        )
        assert disable.status_code == 204

    assert not TOTPDevice.objects.exists()
    assert api.get("/auth/me").json()["account"]["totp_enabled"] is False
    assert authed(type(api)(), first_token).get("/auth/me").status_code == 401
    assert api.post("/auth/login", login_body, format="json").status_code == 200


def _code(key_hex: str, unix_time: float) -> str:
    """The 6-digit code a phone shows at `unix_time` (RFC 6238 with a 30 s step from t0 = 0)."""
    return f"{hotp(bytes.fromhex(key_hex), int(unix_time) // 30):06d}"


def test_enable_with_a_wrong_code_keeps_2fa_off(api):
    account = make_account()
    authed(api, make_session_token(account)).post("/auth/2fa/setup")

    response = api.post("/auth/2fa/enable", {"code": "000000"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_totp_code"
    assert not TOTPDevice.objects.filter(confirmed=True).exists()


def test_enable_without_setup_is_a_conflict(api):
    response = authed(api, make_session_token(make_account())).post(
        "/auth/2fa/enable", {"code": "123456"}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["error"] == "totp_not_set_up"


def test_setup_while_enabled_is_a_conflict(api):
    account = make_account()
    TOTPDevice.objects.create(user=account, confirmed=True)
    response = authed(api, make_session_token(account)).post("/auth/2fa/setup")
    assert response.status_code == 409
    assert response.json()["error"] == "totp_already_enabled"


def test_disable_needs_a_valid_current_code(api):
    account = make_account()
    TOTPDevice.objects.create(user=account, confirmed=True)
    response = authed(api, make_session_token(account)).post("/auth/2fa/disable", {"code": "000000"}, format="json")
    assert response.status_code == 400
    assert TOTPDevice.objects.filter(user=account, confirmed=True).exists()


def test_wrong_totp_at_login_counts_as_a_failure(api, settings):
    settings.KEYWARD_LOGIN_FAILURES_PER_ACCOUNT = 2
    account = make_account(email="mfa@example.com")
    TOTPDevice.objects.create(user=account, confirmed=True)
    body = {"email": "mfa@example.com", "password": PASSWORD, "totp": "000000"}
    assert api.post("/auth/login", body, format="json").json()["error"] == "totp_required"
    assert api.post("/auth/login", body, format="json").json()["error"] == "totp_required"
    assert api.post("/auth/login", body, format="json").status_code == 429


def test_malformed_codes_never_reach_the_device(api):
    account = make_account()
    device = TOTPDevice.objects.create(user=account, confirmed=True)
    for code in ["", "12345", "abcdef", "123456789", "12 34 5a"]:
        assert verify_totp(device, code) is False
    device.refresh_from_db()
    assert device.throttling_failure_count == 0
    assert SessionToken.objects.count() == 0


def test_a_code_for_a_device_replaced_meanwhile_is_wrong_not_a_crash():
    """A concurrent setup (or disable) deletes the device a check was about to lock: that was a 500
    (TOTPDevice.DoesNotExist) when schemathesis raced POST /auth/2fa/setup and /auth/2fa/enable."""
    account = make_account()
    device = TOTPDevice.objects.create(user=account, key=b"12345678901234567890".hex(), digits=8, t0=0)
    TOTPDevice.objects.filter(pk=device.pk).delete()
    with mock.patch("django_otp.plugins.otp_totp.models.time") as clock:
        clock.time.return_value = 59
        assert verify_totp(device, "94287082") is False
