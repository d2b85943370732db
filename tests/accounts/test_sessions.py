from datetime import timedelta

import pytest
from django.utils import timezone

from keyward.accounts.models import SessionToken
from tests.factories import make_account, make_session_token

pytestmark = pytest.mark.django_db


def me(api, token: str):
    return api.get("/auth/me", HTTP_AUTHORIZATION=f"Bearer {token}")


def test_session_lasts_12_hours(api):
    token = make_session_token(make_account())
    session = SessionToken.objects.get()
    lifetime = session.expires_at - session.created_at
    assert timedelta(hours=12) - timedelta(seconds=5) < lifetime <= timedelta(hours=12)
    assert me(api, token).status_code == 200


def test_expired_session_is_refused(api):
    token = make_session_token(make_account())
    SessionToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = me(api, token)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert response["WWW-Authenticate"] == 'Bearer realm="keyward"'


def test_logout_revokes_the_token(api):
    token = make_session_token(make_account())

    assert api.post("/auth/logout", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 204

    assert me(api, token).status_code == 401
    assert SessionToken.objects.get().revoked_at is not None


def test_logout_leaves_other_sessions_alone(api):
    account = make_account()
    first, second = make_session_token(account), make_session_token(account)
    api.post("/auth/logout", HTTP_AUTHORIZATION=f"Bearer {first}")
    assert me(api, second).status_code == 200


def test_deactivated_account_sessions_stop_working(api):
    account = make_account()
    token = make_session_token(account)
    account.is_active = False
    account.save()
    assert me(api, token).status_code == 401


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer a b",
        "Bearer kw_sess_doesnotexist",
        "Bearer kw_sess_" + "x" * 500,
        "Bearer not-a-session-token",
        "Bearer kw_sess_\u00e9\u00e9",
    ],
)
def test_malformed_or_unknown_tokens_are_401_in_the_error_shape(api, header):
    response = api.get("/auth/me", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert set(response.json()) == {"error", "message", "request_id"}


def test_a_token_that_only_shares_the_prefix_is_refused(api):
    token = make_session_token(make_account())
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert me(api, forged).status_code == 401


def test_no_credentials_is_401_not_403(api):
    response = api.get("/auth/me")
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


def test_me_reads_session_account_org_in_pinned_queries(api, django_assert_num_queries):
    token = make_session_token(make_account())
    # 1: session + account + org (one join); 2: the account's TOTP devices.
    with django_assert_num_queries(2):
        assert me(api, token).status_code == 200
