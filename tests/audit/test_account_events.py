"""Account events go through the audit writer: who, what, outcome, reason, request id and IP."""

import time
from io import StringIO
from unittest import mock

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import DatabaseError, transaction
from django.test import override_settings
from django_otp.oath import hotp
from django_otp.plugins.otp_totp.models import TOTPDevice

from keyward.accounts import services
from keyward.accounts.models import Account, PendingSignup, Role, SessionToken
from keyward.audit.chain import canonical_bytes, canonical_fields
from keyward.audit.models import AuditEvent
from keyward.audit.services import verify_chain
from tests.factories import PASSWORD, make_account, make_session_token, sign_up, signup_token_from_mail

pytestmark = pytest.mark.django_db

STRONG = "correct horse battery staple"


def only_event(event_type: str, **filters) -> AuditEvent:
    return AuditEvent.objects.get(event_type=event_type, **filters)


def login(api, email, password=PASSWORD, totp=None, **request_extra):
    body = {"email": email, "password": password} | ({"totp": totp} if totp else {})
    return api.post("/auth/login", body, format="json", **request_extra)


def test_signup_is_audited_in_the_new_orgs_chain_with_request_id_and_ip(api):
    api.post(
        "/auth/signup",
        {"org_name": "Audit Co", "email": "Owner@Example.com", "password": STRONG},
        format="json",
        REMOTE_ADDR="198.51.100.10",
    )
    requested = only_event("account.signup_requested")
    assert (requested.org, requested.outcome, requested.ip) == (None, "pending", "198.51.100.10")
    assert requested.actor_name.startswith("unknown:")
    assert requested.actor_name.endswith("@example.com")
    response = api.post(
        "/auth/signup/confirm",
        {"token": signup_token_from_mail("owner@example.com")},
        format="json",
        REMOTE_ADDR="198.51.100.20",
    )

    event = only_event("account.signup")
    account = Account.objects.get(email="owner@example.com")
    assert event.org == account.org
    assert (event.outcome, event.actor_type, event.actor_id) == ("success", "account", str(account.pk))
    assert event.actor_name == "owner@example.com"
    assert (event.request_id, event.ip) == (response["X-Request-Id"], "198.51.100.20")
    assert event.detail == {"org_slug": "audit-co", "role": "owner"}


def test_login_success_is_audited(api):
    account = make_account(email="ok@example.com")
    response = login(api, "ok@example.com", HTTP_X_REQUEST_ID="trace-login-0001")

    event = only_event("account.login")
    assert response.status_code == 200
    assert (event.org, event.outcome, event.actor_name) == (account.org, "success", "ok@example.com")
    assert event.request_id == "trace-login-0001"
    assert event.detail == {"second_factor": False}


@pytest.mark.parametrize(
    ("password", "active", "cause"),
    [("not the password at all", True, "wrong_password"), (PASSWORD, False, "account_inactive")],
)
def test_failed_login_of_a_known_account_is_audited_in_its_org(api, password, active, cause):
    account = make_account(email="bob@example.com", is_active=active)

    response = login(api, "bob@example.com", password)

    assert response.status_code == 401
    event = only_event("account.login_failed")
    assert event.org == account.org
    assert (event.outcome, event.reason_code) == ("failure", "invalid_credentials")
    assert (event.actor_type, event.actor_id, event.actor_name) == ("anonymous", str(account.pk), "bob@example.com")
    assert event.detail == {"cause": cause}
    assert not SessionToken.objects.exists()


def test_failed_login_for_an_unknown_email_goes_to_the_platform_chain(api):
    response = login(api, "Ghost@Example.com", REMOTE_ADDR="203.0.113.5")

    assert response.status_code == 401
    event = only_event("account.login_failed")
    assert event.org is None
    assert (event.reason_code, event.actor_id) == ("invalid_credentials", "")
    assert event.actor_name == services.unknown_identifier_marker("ghost@example.com")
    assert (event.detail, event.ip) == ({"cause": "unknown_email"}, "203.0.113.5")
    assert verify_chain(None).ok


@override_settings(KEYWARD_LOGIN_FAILURES_PER_ACCOUNT=2)
def test_rate_limited_login_is_audited_as_denied(api):
    account = make_account(email="locked@example.com")
    for _ in range(2):
        login(api, "locked@example.com", "guess guess guess")

    response = login(api, "locked@example.com")

    assert response.status_code == 429
    limited = only_event("account.login_failed", reason_code="rate_limited")
    assert (limited.org, limited.outcome, limited.detail) == (account.org, "denied", {"cause": "too_many_failures"})
    assert AuditEvent.objects.filter(event_type="account.login_failed").count() == 3
    assert verify_chain(account.org).ok


def test_missing_and_wrong_second_factor_are_audited(api):
    account = make_account(email="mfa@example.com")
    TOTPDevice.objects.create(user=account, confirmed=True)

    login(api, "mfa@example.com")
    login(api, "mfa@example.com", totp="000000")

    causes = list(
        AuditEvent.objects.filter(event_type="account.login_failed")
        .order_by("seq")
        .values_list("reason_code", "detail")
    )
    assert causes == [
        ("totp_required", {"cause": "second_factor_missing"}),
        ("totp_required", {"cause": "second_factor_wrong"}),
    ]


@pytest.mark.django_db(transaction=True)
def test_a_failed_login_row_is_committed_although_the_login_raises():
    """No test transaction here: what the database holds afterwards is what a real server would keep."""
    make_account(email="real@example.com")
    with pytest.raises(services.Unauthorized):
        services.login(email="real@example.com", password="wrong wrong wrong", totp=None, ip="192.0.2.1")
    assert AuditEvent.objects.filter(event_type="account.login_failed", reason_code="invalid_credentials").exists()


def test_login_refuses_to_run_inside_a_transaction_that_would_roll_back_its_failure_row():
    make_account(email="nested@example.com")
    with transaction.atomic(), pytest.raises(RuntimeError, match="durable"):
        services.login(email="nested@example.com", password="wrong wrong wrong", totp=None, ip=None)


def test_logout_is_audited(api):
    account = make_account()
    token = make_session_token(account)
    response = api.post("/auth/logout", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 204
    event = only_event("account.logout")
    assert (event.org, event.actor_name, event.request_id) == (account.org, account.email, response["X-Request-Id"])


def _code(device: TOTPDevice, unix_time: float) -> str:
    return f"{hotp(device.bin_key, int(unix_time) // device.step):0{device.digits}d}"


def test_2fa_enable_and_disable_are_audited(api):
    account = make_account()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {make_session_token(account)}")
    api.post("/auth/2fa/setup")
    device = TOTPDevice.objects.get(user=account)
    now = time.time()
    with mock.patch("django_otp.plugins.otp_totp.models.time") as clock:
        clock.time.return_value = now
        assert api.post("/auth/2fa/enable", {"code": _code(device, now)}, format="json").status_code == 204
        clock.time.return_value = now + 30
        assert api.post("/auth/2fa/disable", {"code": _code(device, now + 30)}, format="json").status_code == 204

    enabled, disabled = only_event("account.2fa_enabled"), only_event("account.2fa_disabled")
    assert enabled.seq < disabled.seq
    assert {enabled.actor_name, disabled.actor_name} == {account.email}
    assert enabled.org == account.org


def test_a_refused_2fa_change_writes_no_success_row(api):
    account = make_account()
    TOTPDevice.objects.create(user=account, confirmed=True)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {make_session_token(account)}")
    assert api.post("/auth/2fa/disable", {"code": "000000"}, format="json").status_code == 400
    assert not AuditEvent.objects.filter(event_type="account.2fa_disabled").exists()


def test_role_change_is_audited_with_old_and_new_role(callers):
    response = callers.client("owner").post(f"/v1/admins/{callers.viewer.email}/role", {"role": "admin"}, format="json")

    assert response.status_code == 200
    event = only_event("account.role_changed")
    assert (event.org, event.actor_name, event.actor_id) == (callers.org, callers.owner.email, str(callers.owner.pk))
    assert event.detail == {
        "account_id": callers.viewer.pk,
        "email": callers.viewer.email,
        "old_role": "viewer",
        "new_role": "admin",
    }
    assert event.request_id == response["X-Request-Id"]


def test_no_op_and_refused_role_changes_write_no_row(callers):
    client = callers.client("owner")
    assert client.post(f"/v1/admins/{callers.viewer.email}/role", {"role": "viewer"}, format="json").status_code == 200
    assert client.post(f"/v1/admins/{callers.owner.email}/role", {"role": "admin"}, format="json").status_code == 409
    assert not AuditEvent.objects.filter(event_type="account.role_changed").exists()


def test_deactivation_is_audited(callers):
    response = callers.client("owner").delete(f"/v1/admins/{callers.admin.email}")
    assert response.status_code == 204
    event = only_event("account.deactivated")
    assert (event.org, event.actor_name) == (callers.org, callers.owner.email)
    assert event.detail == {"account_id": callers.admin.pk, "email": callers.admin.email, "role": "admin"}


def test_creating_a_superadmin_is_audited_in_the_platform_chain(monkeypatch):
    monkeypatch.setattr("sys.stdin", StringIO(STRONG + "\n"))
    call_command("createsuperadmin", "--email", "ops@example.com", "--password-stdin", stdout=StringIO())
    event = only_event("account.superadmin_created")
    assert (event.org, event.actor_type) == (None, "system")
    assert event.detail["email"] == "ops@example.com"


@pytest.mark.parametrize(
    "failure",
    [
        mock.patch.object(AuditEvent, "save", side_effect=DatabaseError("audit table gone")),
        mock.patch("keyward.audit.writer.lock_chain_head", side_effect=DatabaseError("lock timeout")),
    ],
    ids=["row-write-fails", "head-lock-fails"],
)
def test_role_change_fails_closed_when_the_audit_row_cannot_be_written(callers, failure):
    target_token = make_session_token(callers.viewer)
    with failure:
        response = callers.client("owner").post(
            f"/v1/admins/{callers.viewer.email}/role", {"role": "admin"}, format="json"
        )

    assert response.status_code == 503
    assert response.json()["error"] == "audit_unavailable"
    callers.viewer.refresh_from_db()
    assert callers.viewer.role == Role.VIEWER
    assert SessionToken.objects.filter(account=callers.viewer).live().exists()
    assert callers.client("anonymous").get("/auth/me", HTTP_AUTHORIZATION=f"Bearer {target_token}").status_code == 200
    assert not AuditEvent.objects.filter(event_type="account.role_changed").exists()


def test_login_and_signup_fail_closed_when_the_audit_row_cannot_be_written(api):
    make_account(email="bob@example.com")
    with mock.patch.object(AuditEvent, "save", side_effect=DatabaseError("audit table gone")):
        login_response = login(api, "bob@example.com")
        signup_response = api.post(
            "/auth/signup", {"org_name": "Nope", "email": "new@example.com", "password": STRONG}, format="json"
        )
    assert (login_response.status_code, signup_response.status_code) == (503, 503)
    assert not SessionToken.objects.exists()
    assert not PendingSignup.objects.exists()
    assert mail.outbox == []  # no confirmation goes out for a sign-up that was not recorded


def test_no_audit_row_holds_a_password_or_session_token(api):
    signup = sign_up(api, org_name="Secretive", email="s@example.com", password=STRONG).json()
    signup_token = signup_token_from_mail("s@example.com")
    login(api, "s@example.com", STRONG)
    login(api, "s@example.com", "a wrong but secret guess")
    token = login(api, "s@example.com", STRONG).json()["token"]
    api.post("/auth/logout", HTTP_AUTHORIZATION=f"Bearer {token}")

    everything = b"".join(canonical_bytes(canonical_fields(row)) for row in AuditEvent.objects.all())
    assert AuditEvent.objects.count() == 6
    for secret in (STRONG, "a wrong but secret guess", signup["token"], signup_token, token):
        assert secret.encode() not in everything
    assert verify_chain(Account.objects.get(email="s@example.com").org).ok
