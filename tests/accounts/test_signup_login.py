from unittest import mock

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
from django.core import mail
from django.test import override_settings
from django.utils import timezone

from keyward.accounts.models import Account, PendingSignup, Role, SessionToken, hash_token
from keyward.audit.models import AuditEvent
from keyward.tenancy.models import Org
from tests.factories import PASSWORD, make_account, make_org, sign_up, signup_token_from_mail

pytestmark = pytest.mark.django_db

STRONG = "correct horse battery staple"


def signup(api, email="Alice@Example.com", password=STRONG, org_name="Acme Corp"):
    return sign_up(api, org_name=org_name, email=email, password=password)


def login(api, email, password=PASSWORD, **request_extra):
    return api.post("/auth/login", {"email": email, "password": password}, format="json", **request_extra)


def test_signup_creates_org_and_owner_and_returns_a_working_session(api):
    response = signup(api)

    assert response.status_code == 201
    body = response.json()
    assert body["token"].startswith("kw_sess_")
    assert body["account"]["email"] == "alice@example.com"
    assert body["account"]["role"] == "owner"
    assert body["org"]["name"] == "Acme Corp"
    assert body["org"]["slug"] == "acme-corp"
    assert "password" not in response.content.decode()
    account = Account.objects.get(email="alice@example.com")
    assert account.org.name == "Acme Corp"
    assert account.role == Role.OWNER

    api.credentials(HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    me = api.get("/auth/me").json()
    assert me["account"]["email"] == "alice@example.com"
    assert me["org"]["slug"] == "acme-corp"


def test_session_token_is_stored_only_as_a_hash(api):
    token = signup(api).json()["token"]

    session = SessionToken.objects.get()
    assert session.token_hash == hash_token(token)
    assert token not in {session.token_hash, session.prefix}
    assert token.startswith(session.prefix)


@override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.Argon2PasswordHasher"])
def test_passwords_are_hashed_with_argon2(api):
    signup(api)
    assert Account.objects.get().password.startswith("argon2$argon2id$")


def test_same_org_name_gets_a_distinct_slug(api):
    signup(api, email="a@one.com")
    second = signup(api, email="b@two.com")
    assert second.json()["org"]["slug"] == "acme-corp-2"


@pytest.mark.parametrize(
    ("password", "why"),
    [("short", "too short"), ("password1234", "too common"), ("1234567890123", "entirely numeric")],
)
def test_weak_password_is_refused_with_field_errors(api, password, why):
    response = signup(api, password=password)

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_request"
    assert any(why in message for message in body["fields"]["password"])
    assert not Org.objects.exists()


def test_a_taken_email_gets_the_same_answer_as_a_new_one_and_its_owner_an_email(api):
    """Finding 5: sign-up said "An account with this email already exists" (an enumeration oracle)."""
    owner = make_account(make_org("Secret Org Name"), Role.OWNER, email="taken@example.com")
    body = {"org_name": "Acme", "password": STRONG}

    taken = api.post("/auth/signup", {**body, "email": "TAKEN@example.com"}, format="json")
    new = api.post("/auth/signup", {**body, "email": "new@example.com"}, format="json")

    assert taken.status_code == new.status_code == 202
    assert taken.json() == new.json() == {"status": "confirmation_sent", "message": taken.json()["message"]}
    assert set(taken.headers) == set(new.headers)
    assert Org.objects.count() == 1  # nothing is created before the confirmation
    (note, link) = mail.outbox
    assert (note.to, link.to) == (["taken@example.com"], ["new@example.com"])
    assert "kw_signup_" not in note.body
    assert "already has" in note.body
    attempt = AuditEvent.objects.get(event_type="account.signup_attempted")
    assert (attempt.org, attempt.reason_code, attempt.actor_name) == (owner.org, "email_taken", owner.email)
    assert AuditEvent.objects.filter(event_type="account.signup_requested", org=None).count() == 1


def test_both_answers_do_the_same_work(api):
    """Same status and body is not enough: one password hash and one email each (similar timing)."""
    make_account(email="taken@example.com")
    body = {"org_name": "Acme", "password": STRONG}
    with mock.patch.object(MD5PasswordHasher, "encode", autospec=True, side_effect=MD5PasswordHasher.encode) as spy:
        api.post("/auth/signup", {**body, "email": "taken@example.com"}, format="json")
        taken_hashes = spy.call_count
        api.post("/auth/signup", {**body, "email": "fresh@example.com"}, format="json")
    assert taken_hashes == spy.call_count - taken_hashes == 1
    assert len(mail.outbox) == 2


def test_a_confirmation_token_works_once_and_only_before_it_expires(api):
    api.post("/auth/signup", {"org_name": "Acme", "email": "a@example.com", "password": STRONG}, format="json")
    token = signup_token_from_mail("a@example.com")
    assert PendingSignup.objects.get().token_hash != token  # only its hash is stored

    first = api.post("/auth/signup/confirm", {"token": token}, format="json")
    again = api.post("/auth/signup/confirm", {"token": token}, format="json")

    assert first.status_code == 201
    assert (again.status_code, again.json()["error"]) == (400, "invalid_signup_token")
    assert Org.objects.count() == 1

    api.post("/auth/signup", {"org_name": "Late", "email": "b@example.com", "password": STRONG}, format="json")
    PendingSignup.objects.update(expires_at=timezone.now())
    late = api.post("/auth/signup/confirm", {"token": signup_token_from_mail("b@example.com")}, format="json")
    assert (late.status_code, late.json()["error"]) == (400, "invalid_signup_token")
    assert not Account.objects.filter(email="b@example.com").exists()


@pytest.mark.parametrize("token", ["", "kw_signup_forged", "kw_sess_whatever", "x" * 5000])
def test_a_forged_confirmation_token_is_refused(api, token):
    response = api.post("/auth/signup/confirm", {"token": token}, format="json")
    assert response.status_code == 400
    assert not Org.objects.exists()


def test_a_mail_server_that_fails_is_a_503_and_the_same_for_both(api):
    make_account(email="taken@example.com")
    body = {"org_name": "Acme", "password": STRONG}
    with mock.patch("keyward.accounts.services.send_mail", side_effect=ConnectionRefusedError):
        answers = [
            api.post("/auth/signup", {**body, "email": email}, format="json")
            for email in ("taken@example.com", "n@example.com")
        ]
    assert [(a.status_code, a.json()["error"], a["Retry-After"]) for a in answers] == [
        (503, "email_unavailable", "5")
    ] * 2


@pytest.mark.parametrize(
    "body",
    [{}, {"org_name": "x", "email": "not-an-email", "password": STRONG}, {"org_name": "", "email": "a@b.co"}],
)
def test_signup_with_bad_body_is_a_400_with_fields(api, body):
    response = api.post("/auth/signup", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert response.json()["fields"]


def test_login_returns_a_session_and_emails_are_case_insensitive(api):
    make_account(email="bob@example.com")

    response = login(api, "  BOB@Example.COM ")

    assert response.status_code == 200
    assert set(response.json()) == {"token", "expires_at"}


def test_unknown_email_and_wrong_password_get_the_same_answer(api):
    make_account(email="bob@example.com")

    wrong_password = login(api, "bob@example.com", "not the password at all")
    unknown_email = login(api, "nobody@example.com")

    for response in (wrong_password, unknown_email):
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_credentials"
        assert response.json()["message"] == "The email or password is wrong."


def test_unknown_email_still_spends_a_password_hash(api):
    """Similar timing: the unknown-email path runs the hasher just as a wrong password does."""
    make_account(email="bob@example.com")
    with mock.patch.object(MD5PasswordHasher, "encode", autospec=True, side_effect=MD5PasswordHasher.encode) as spy:
        login(api, "bob@example.com", "wrong wrong wrong")
        known_calls = spy.call_count
        login(api, "nobody@example.com", "wrong wrong wrong")
        unknown_calls = spy.call_count - known_calls
    assert known_calls >= 1
    assert unknown_calls == known_calls


def test_inactive_account_cannot_log_in(api):
    make_account(email="gone@example.com", is_active=False)
    response = login(api, "gone@example.com")
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_credentials"


@override_settings(KEYWARD_LOGIN_FAILURES_PER_ACCOUNT=3)
def test_repeated_failures_lock_the_account_even_for_the_right_password(api):
    make_account(email="bob@example.com")
    for _ in range(3):
        assert login(api, "bob@example.com", "guess guess guess").status_code == 401

    response = login(api, "bob@example.com")

    assert response.status_code == 429
    assert response.json()["error"] == "rate_limited"
    assert 1 <= int(response["Retry-After"]) <= 900


@override_settings(KEYWARD_LOGIN_FAILURES_PER_IP=4)
def test_repeated_failures_from_one_ip_are_throttled_across_accounts(api):
    make_account(email="carol@example.com")
    for n in range(4):
        login(api, f"spray{n}@example.com", "guess guess guess", REMOTE_ADDR="10.1.1.1")

    blocked = login(api, "carol@example.com", REMOTE_ADDR="10.1.1.1")
    other_ip = login(api, "carol@example.com", REMOTE_ADDR="10.2.2.2")

    assert blocked.status_code == 429
    assert other_ip.status_code == 200


@override_settings(KEYWARD_LOGIN_FAILURES_PER_ACCOUNT=3)
def test_unknown_emails_are_throttled_like_known_ones(api):
    """Otherwise a lockout would reveal which emails have accounts."""
    for _ in range(3):
        login(api, "ghost@example.com", "guess guess guess")
    assert login(api, "ghost@example.com").status_code == 429


@override_settings(KEYWARD_LOGIN_FAILURES_PER_ACCOUNT=3)
def test_a_successful_login_resets_the_account_counter(api):
    make_account(email="bob@example.com")
    for _ in range(2):
        login(api, "bob@example.com", "guess guess guess")
    assert login(api, "bob@example.com").status_code == 200
    for _ in range(2):
        login(api, "bob@example.com", "guess guess guess")
    assert login(api, "bob@example.com").status_code == 200
