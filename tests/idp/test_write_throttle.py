"""IdP writes make keyward fetch URLs and query DNS, so each org gets a budget of them (KEYWARD_IDP_WRITE_RATE)."""

import pytest

from keyward.idp.api import OrgRateThrottle
from tests.idp.test_api import connector_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def three_writes_an_hour(monkeypatch):
    monkeypatch.setitem(OrgRateThrottle.THROTTLE_RATES, "idp_write", "3/hour")


@pytest.mark.usefixtures("three_writes_an_hour")
def test_connector_writes_share_one_budget_per_org(callers, fake_idp, other_idp):
    admin, owner = callers.client("admin"), callers.client("owner")
    first = admin.post("/v1/idps", connector_body(fake_idp, email_domains=["example.com"]), format="json")
    second = owner.post("/v1/idps", connector_body(fake_idp, name="b", audience="b", email_domains=[]), format="json")
    patched = admin.patch(f"/v1/idps/{first.json()['id']}", {"name": "renamed"}, format="json")
    assert [first.status_code, second.status_code, patched.status_code] == [201, 201, 200]

    over = [
        owner.patch(f"/v1/idps/{second.json()['id']}", {"name": "again"}, format="json"),
        admin.post("/v1/idps", connector_body(fake_idp, name="c", audience="c", email_domains=[]), format="json"),
        owner.post(f"/v1/idps/{first.json()['id']}/domains/example.com/verify"),
    ]

    for response in over:
        assert response.status_code == 429
        assert response.json()["error"] == "rate_limited"
        assert int(response["Retry-After"]) > 0
    assert admin.get("/v1/idps").status_code == 200
    assert admin.delete(f"/v1/idps/{second.json()['id']}").status_code == 204
    other_org = callers.client("other_org").post("/v1/idps", connector_body(other_idp, email_domains=[]), format="json")
    assert other_org.status_code == 201
