"""Email-domain routing needs proof of control: a DNS TXT record at `_keyward.<domain>`.

The attack: any org claims `victim.com` and the public /auth/tenant then sends victim.com's users
to the attacker's org and IdP; the real owner even gets a 409 for its own domain.
"""

import threading

import pytest
from django.db import IntegrityError, connections

from keyward.audit.models import AuditEvent
from keyward.core.exceptions import Conflict, NotFound
from keyward.idp import services
from keyward.idp.models import IdpEmailDomain
from keyward.net.errors import OutboundError
from tests.factories import make_org
from tests.idp.test_api import ADMIN_ONLY, connector_body
from tests.permissions import assert_permission_matrix

pytestmark = pytest.mark.django_db


def create(client, idp, **overrides) -> dict:
    response = client.post("/v1/idps", connector_body(idp, **overrides), format="json")
    assert response.status_code == 201, response.content
    return response.json()


def publish(fake_txt, claim: dict) -> None:
    """What the domain's owner does in its DNS zone."""
    fake_txt.setdefault(f"_keyward.{claim['domain']}", []).append(claim["verification_record"])


def claim_of(connector: dict, domain: str) -> dict:
    return next(claim for claim in connector["email_domains"] if claim["domain"] == domain)


def verify_path(connector: dict, domain: str) -> str:
    return f"/v1/idps/{connector['id']}/domains/{domain}/verify"


def test_a_claimed_domain_starts_unverified_and_does_not_route(callers, fake_idp, api):
    connector = create(callers.client("admin"), fake_idp, email_domains=["Example.COM"])

    claim = claim_of(connector, "example.com")
    assert claim["verified"] is False
    assert claim["verification_record"].startswith("keyward-verification=")
    assert len(claim["verification_record"]) > len("keyward-verification=") + 20
    shown = callers.client("admin").get(f"/v1/idps/{connector['id']}").json()
    assert shown["email_domains"] == [claim]
    assert api.get("/auth/tenant", {"email": "bob@example.com"}).status_code == 404


def test_verifying_a_published_record_routes_the_domain(callers, fake_idp, fake_txt, api):
    connector = create(callers.client("admin"), fake_idp, email_domains=["example.com"], oidc_client_id="cid")
    publish(fake_txt, claim_of(connector, "example.com"))

    response = callers.client("admin").post(verify_path(connector, "example.com"))

    assert response.status_code == 200, response.content
    assert response.json()["verified"] is True
    event = AuditEvent.objects.get(org=callers.org, event_type="idp.domain_verified")
    assert event.detail == {"connector_id": connector["id"], "domain": "example.com"}
    assert event.actor_id == str(callers.admin.pk)
    found = api.get("/auth/tenant", {"email": "bob@EXAMPLE.com"})
    assert found.status_code == 200
    assert found.json() == {
        "org": {"slug": callers.org.slug, "name": callers.org.name},
        "idp": {"name": "okta", "kind": "oidc", "issuer": fake_idp.url, "oidc_client_id": "cid"},
    }
    again = callers.client("admin").post(verify_path(connector, "example.com"))
    assert again.status_code == 200
    assert AuditEvent.objects.filter(event_type="idp.domain_verified").count() == 1


@pytest.mark.parametrize(
    "published",
    [[], ["keyward-verification=someone-elses-token"], ["v=spf1 -all"], OutboundError("x", code="dns_unavailable")],
    ids=["nothing", "another-token", "unrelated", "dns-down"],
)
def test_without_the_record_the_domain_stays_unverified(callers, fake_idp, fake_txt, published):
    connector = create(callers.client("admin"), fake_idp, email_domains=["example.com"])
    fake_txt["_keyward.example.com"] = published

    response = callers.client("admin").post(verify_path(connector, "example.com"))

    assert response.status_code == 409
    assert response.json()["error"] == "domain_not_verified"
    assert "_keyward.example.com" in response.json()["message"]
    assert claim_of(connector, "example.com")["verification_record"] in response.json()["message"]
    assert not IdpEmailDomain.objects.filter(verified_at__isnull=False).exists()
    assert not AuditEvent.objects.filter(event_type="idp.domain_verified").exists()


def test_verify_matrix(callers, fake_idp, fake_txt):
    connector = create(callers.client("admin"), fake_idp, email_domains=["example.com"])
    publish(fake_txt, claim_of(connector, "example.com"))
    assert_permission_matrix(callers, "POST", verify_path(connector, "example.com"), ADMIN_ONLY)


@pytest.mark.parametrize(("domain", "status"), [("elsewhere.com", 404), ("not_a_domain", 400), ("x" * 300, 400)])
def test_verifying_a_domain_the_connector_does_not_claim(callers, fake_idp, domain, status):
    connector = create(callers.client("admin"), fake_idp, email_domains=["example.com"])
    assert callers.client("admin").post(verify_path(connector, domain)).status_code == status


def test_the_squatter_scenario(callers, fake_idp, other_idp, fake_txt, api):
    """A stranger claims victim.com first; the real owner still claims, verifies and wins it."""
    stranger, owner = callers.client("other_org"), callers.client("admin")
    squat = create(stranger, other_idp, email_domains=["victim.com", "gmail.com"])
    assert api.get("/auth/tenant", {"email": "ceo@victim.com"}).status_code == 404

    real = create(owner, fake_idp, email_domains=["victim.com"])  # unverified claims coexist
    assert stranger.post(verify_path(squat, "victim.com")).status_code == 409  # cannot publish victim's DNS
    publish(fake_txt, claim_of(real, "victim.com"))
    assert stranger.post(verify_path(squat, "victim.com")).status_code == 409  # the owner's record is not theirs
    assert owner.post(verify_path(real, "victim.com")).status_code == 200

    assert api.get("/auth/tenant", {"email": "ceo@victim.com"}).json()["org"]["slug"] == callers.org.slug
    remaining = stranger.get(f"/v1/idps/{squat['id']}").json()["email_domains"]
    assert [claim["domain"] for claim in remaining] == ["gmail.com"]
    removal = AuditEvent.objects.get(org=callers.other_org.org, event_type="idp.domain_claim_removed")
    assert removal.detail == {"connector_id": squat["id"], "domain": "victim.com"}
    assert removal.actor_id in ("", None)
    assert removal.ip in ("", None)

    again = stranger.patch(f"/v1/idps/{squat['id']}", {"email_domains": ["victim.com"]}, format="json")
    assert again.status_code == 409
    assert again.json()["error"] == "email_domain_taken"
    assert callers.org.name not in again.content.decode()
    assert stranger.post(verify_path(squat, "victim.com")).status_code == 404


def test_a_domain_routes_to_one_connector_of_an_org(callers, fake_idp):
    client = callers.client("admin")
    create(client, fake_idp, email_domains=["example.com"])
    response = client.post(
        "/v1/idps",
        connector_body(fake_idp, name="second", audience="other", email_domains=["example.com"]),
        format="json",
    )
    assert response.status_code == 409
    assert response.json()["error"] == "email_domain_taken"


def test_editing_domains_keeps_the_verification_of_those_kept(callers, fake_idp, fake_txt, api):
    client = callers.client("admin")
    connector = create(client, fake_idp, email_domains=["example.com"])
    publish(fake_txt, claim_of(connector, "example.com"))
    client.post(verify_path(connector, "example.com"))

    patched = client.patch(f"/v1/idps/{connector['id']}", {"email_domains": ["example.com", "new.com"]}, format="json")

    assert patched.status_code == 200
    assert [(c["domain"], c["verified"]) for c in patched.json()["email_domains"]] == [
        ("example.com", True),
        ("new.com", False),
    ]
    assert api.get("/auth/tenant", {"email": "a@example.com"}).status_code == 200
    client.patch(f"/v1/idps/{connector['id']}", {"email_domains": []}, format="json")
    assert api.get("/auth/tenant", {"email": "a@example.com"}).status_code == 404


def test_a_domain_is_verified_for_one_org_only_in_the_database(callers, fake_idp, other_idp):
    first = services.create_connector(
        org=callers.org,
        name="a",
        issuer=fake_idp.url,
        audience="a",
        jwks_uri=fake_idp.jwks_uri,
        allowed_algorithms=["RS256"],
        email_domains=["example.com"],
    )
    second = services.create_connector(
        org=callers.other_org.org,
        name="b",
        issuer=other_idp.url,
        audience="b",
        jwks_uri=other_idp.jwks_uri,
        allowed_algorithms=["RS256"],
        email_domains=["example.com"],
    )
    first.email_domains.update(verified_at="2026-01-01T00:00:00Z")
    with pytest.raises(IntegrityError):
        second.email_domains.update(verified_at="2026-01-01T00:00:00Z")


@pytest.mark.parametrize(
    "email",
    ["a@x\x00.com", "\x00@x.com", "a@", "@", "a@b@c", "nobody", "a@" + "b" * 300, ""],
    ids=["nul-in-domain", "nul-in-local", "no-domain", "at-only", "two-ats", "no-at", "too-long", "empty"],
)
def test_tenant_lookup_refuses_what_is_not_an_email(api, email):
    response = api.get("/auth/tenant", {"email": email})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "email" in response.json()["fields"]


def test_tenant_lookup_without_an_email_is_a_400(api):
    assert api.get("/auth/tenant").status_code == 400


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_orgs_verifying_one_domain_at_once_leave_one_owner(fake_idp, other_idp, fake_txt):
    """The domain's owner published both records; the per-domain lock lets exactly one org win."""
    orgs = [make_org(), make_org()]
    connectors = [
        services.create_connector(
            org=org,
            name="idp",
            issuer=idp.url,
            audience="aud",
            jwks_uri=idp.jwks_uri,
            allowed_algorithms=["RS256"],
            email_domains=["contested.com"],
        )
        for org, idp in zip(orgs, (fake_idp, other_idp), strict=True)
    ]
    fake_txt["_keyward.contested.com"] = [claim.verification_record for claim in IdpEmailDomain.objects.all()]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def verify(connector) -> None:
        try:
            barrier.wait(timeout=10)
            services.verify_domain(connector, "contested.com", org=connector.org)
            outcomes.append("verified")
        except (Conflict, NotFound):
            outcomes.append("refused")
        except BaseException as exc:  # a failing thread must fail the test, not vanish
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=verify, args=(connector,)) for connector in connectors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert sorted(outcomes) == ["refused", "verified"]
    assert IdpEmailDomain.objects.filter(domain="contested.com").count() == 1
    assert IdpEmailDomain.objects.get(domain="contested.com").verified
