import pytest

from keyward.accounts.models import Account, Role, SessionToken
from tests.factories import make_account, make_session_token
from tests.permissions import assert_permission_matrix

pytestmark = pytest.mark.django_db

OWNER_ONLY_READ = {"anonymous": 401, "other_org": 200, "viewer": 403, "admin": 403, "owner": 200}


def test_list_admins_permission_matrix_and_org_scoping(callers):
    responses = assert_permission_matrix(callers, "GET", "/v1/admins", OWNER_ONLY_READ)

    own = {row["email"] for row in responses["owner"].json()}
    assert own == {callers.viewer.email, callers.admin.email, callers.owner.email}
    other = {row["email"] for row in responses["other_org"].json()}
    assert other == {callers.other_org.email}
    assert "password" not in responses["owner"].content.decode()


def test_get_one_admin_matrix_other_org_is_404(callers):
    assert_permission_matrix(
        callers,
        "GET",
        f"/v1/admins/{callers.viewer.email.upper()}",
        {"anonymous": 401, "other_org": 404, "viewer": 403, "admin": 403, "owner": 200},
    )


def test_role_change_matrix(callers):
    responses = assert_permission_matrix(
        callers,
        "POST",
        f"/v1/admins/{callers.viewer.email}/role",
        {"anonymous": 401, "other_org": 404, "viewer": 403, "admin": 403, "owner": 200},
        data={"role": "admin"},
    )
    assert responses["owner"].json()["role"] == "admin"
    callers.viewer.refresh_from_db()
    assert callers.viewer.role == Role.ADMIN


def test_role_change_revokes_that_accounts_sessions(callers, api):
    target_token = make_session_token(callers.admin)
    response = callers.client("owner").post(f"/v1/admins/{callers.admin.email}/role", {"role": "viewer"}, format="json")

    assert response.status_code == 200
    assert api.get("/auth/me", HTTP_AUTHORIZATION=f"Bearer {target_token}").status_code == 401
    assert not SessionToken.objects.filter(account=callers.admin).live().exists()


def test_superadmin_is_never_grantable(callers):
    response = callers.client("owner").post(
        f"/v1/admins/{callers.admin.email}/role", {"role": "superadmin"}, format="json"
    )
    assert response.status_code == 400
    callers.admin.refresh_from_db()
    assert callers.admin.role == Role.ADMIN


def test_unknown_role_is_a_400(callers):
    response = callers.client("owner").post(f"/v1/admins/{callers.admin.email}/role", {"role": "god"}, format="json")
    assert response.status_code == 400
    assert "role" in response.json()["fields"]


def test_last_owner_cannot_be_demoted(callers):
    response = callers.client("owner").post(f"/v1/admins/{callers.owner.email}/role", {"role": "admin"}, format="json")

    assert response.status_code == 409
    assert response.json()["error"] == "last_owner"
    callers.owner.refresh_from_db()
    assert callers.owner.role == Role.OWNER


def test_an_owner_can_step_down_when_another_owner_remains(callers):
    second_owner = make_account(callers.org, Role.OWNER)
    response = callers.client("owner").post(f"/v1/admins/{callers.owner.email}/role", {"role": "admin"}, format="json")
    assert response.status_code == 200
    assert Account.objects.filter(org=callers.org, role=Role.OWNER).get() == second_owner


def test_inactive_owner_does_not_count_as_the_remaining_owner(callers):
    make_account(callers.org, Role.OWNER, is_active=False)
    response = callers.client("owner").post(f"/v1/admins/{callers.owner.email}/role", {"role": "admin"}, format="json")
    assert response.status_code == 409


def test_deactivate_matrix_and_effects(callers, api):
    target_token = make_session_token(callers.viewer)
    assert_permission_matrix(
        callers,
        "DELETE",
        f"/v1/admins/{callers.viewer.email}",
        {"anonymous": 401, "other_org": 404, "viewer": 403, "admin": 403, "owner": 204},
    )
    callers.viewer.refresh_from_db()
    assert callers.viewer.is_active is False
    assert api.get("/auth/me", HTTP_AUTHORIZATION=f"Bearer {target_token}").status_code == 401


def test_last_owner_cannot_be_deactivated(callers):
    response = callers.client("owner").delete(f"/v1/admins/{callers.owner.email}")
    assert response.status_code == 409
    assert response.json()["error"] == "last_owner"


def test_superadmin_without_org_gets_a_clear_refusal_on_org_endpoints(api):
    superadmin = make_account(None, Role.SUPERADMIN)
    response = api.get("/v1/admins", HTTP_AUTHORIZATION=f"Bearer {make_session_token(superadmin)}")
    assert response.status_code == 403
    assert response.json()["error"] == "no_org"
