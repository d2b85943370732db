"""An issuer belongs to one org: no other org can capture or break its end-user tokens' routing.

The attack: a victim's IdP issues tokens carrying two audiences (Auth0 adds `<issuer>/userinfo`).
A stranger signs up, registers the victim's issuer with the *other* audience, and the victim's
tokens now name two orgs' connectors: refused (broken), or routed to the stranger (captured).
"""

import importlib
import threading

import pytest
from django.apps import apps
from django.db import connections

from keyward.core.exceptions import Conflict
from keyward.idp import services
from keyward.idp.dev import dev_issuer, ensure_dev_idp
from keyward.idp.models import IdpConnector, IdpIssuer
from keyward.idp.verification import verify_user_token
from keyward.jose.errors import TokenFailure, TokenInvalid
from tests.factories import make_org
from tests.idp.test_api import connector_body

pytestmark = pytest.mark.django_db

VICTIM_API = "https://api.victim.example"


def userinfo(idp) -> str:
    return f"{idp.url}/userinfo"


def auth0_style_token(idp) -> str:
    return idp.token(audience=[VICTIM_API, userinfo(idp)])


def create(org, idp, **overrides) -> IdpConnector:
    fields = {
        "name": f"idp-{overrides.get('audience', 'keyward-broker')}"[:100],
        "issuer": idp.url,
        "audience": "keyward-broker",
        "jwks_uri": idp.jwks_uri,
        "allowed_algorithms": ["RS256"],
        **overrides,
    }
    return services.create_connector(org=org, **fields)


def test_a_stranger_cannot_register_another_audience_of_the_victims_issuer(callers, fake_idp):
    response = callers.client("admin").post(
        "/v1/idps", connector_body(fake_idp, audience=VICTIM_API, email_domains=[]), format="json"
    )
    assert response.status_code == 201, response.content
    assert verify_user_token(auth0_style_token(fake_idp)).org == callers.org

    stranger = callers.client("other_org").post(
        "/v1/idps",
        connector_body(fake_idp, audience=userinfo(fake_idp), discovery_url=fake_idp.discovery_url, email_domains=[]),
        format="json",
    )

    assert stranger.status_code == 409
    assert stranger.json()["error"] == "issuer_taken"
    assert callers.org.name not in stranger.content.decode()
    assert callers.org.slug not in stranger.content.decode()
    assert fake_idp.http.count("/.well-known/openid-configuration") == 0  # refused before any fetch
    assert IdpConnector.objects.filter(org=callers.other_org.org).count() == 0
    assert verify_user_token(auth0_style_token(fake_idp)).org == callers.org


def test_a_stranger_cannot_move_a_connector_onto_the_victims_issuer(callers, fake_idp, other_idp):
    victim = create(callers.org, fake_idp, audience=VICTIM_API)
    strangers = create(callers.other_org.org, other_idp)

    response = callers.client("other_org").patch(
        f"/v1/idps/{strangers.pk}",
        {"issuer": fake_idp.url, "audience": userinfo(fake_idp), "jwks_uri": fake_idp.jwks_uri},
        format="json",
    )

    assert response.status_code == 409
    assert response.json()["error"] == "issuer_taken"
    strangers.refresh_from_db()
    assert strangers.issuer == other_idp.url
    assert IdpIssuer.objects.get(issuer=fake_idp.url).org == victim.org
    assert verify_user_token(auth0_style_token(fake_idp)).connector == victim


def test_an_org_may_use_several_audiences_of_its_own_issuer(fake_idp):
    org = make_org()
    create(org, fake_idp, audience="first")
    create(org, fake_idp, audience="second")
    assert verify_user_token(fake_idp.token(audience="second")).connector.audience == "second"
    assert IdpIssuer.objects.get(issuer=fake_idp.url).org == org


def test_an_issuer_is_freed_when_its_last_connector_leaves_it(fake_idp, other_idp):
    owner, newcomer = make_org(), make_org()
    first = create(owner, fake_idp, audience="first")
    second = create(owner, fake_idp, audience="second")

    services.update_connector(first, org=owner, issuer=other_idp.url, jwks_uri=other_idp.jwks_uri)
    with pytest.raises(Conflict) as still_owned:
        create(newcomer, fake_idp, audience="mine")
    assert still_owned.value.code == "issuer_taken"

    services.delete_connector(second, org=owner)
    assert create(newcomer, fake_idp, audience="mine").org == newcomer
    assert IdpIssuer.objects.get(issuer=fake_idp.url).org == newcomer
    assert IdpIssuer.objects.get(issuer=other_idp.url).org == owner


def test_a_connector_of_another_org_never_routes_an_owned_issuers_tokens(fake_idp):
    """Defence in depth: even a row that bypassed the service is ignored without the issuer's ownership."""
    victim = create(make_org(), fake_idp, audience=VICTIM_API)
    IdpConnector.objects.create(
        org=make_org(),
        name="rogue",
        issuer=fake_idp.url,
        audience=userinfo(fake_idp),
        jwks_uri=fake_idp.jwks_uri,
        allowed_algorithms=["RS256"],
    )

    assert verify_user_token(auth0_style_token(fake_idp)).connector == victim
    with pytest.raises(TokenInvalid) as refused:
        verify_user_token(fake_idp.token(audience=userinfo(fake_idp)))
    assert refused.value.reason == TokenFailure.WRONG_ISSUER


def test_a_shared_issuer_gives_each_org_its_own_audiences(fake_idp, settings):
    settings.KEYWARD_SHARED_ISSUERS = [fake_idp.url]
    acme, globex = make_org(), make_org()
    create(acme, fake_idp, audience="acme-client")
    create(globex, fake_idp, audience="globex-client")

    assert not IdpIssuer.objects.exists()
    assert verify_user_token(fake_idp.token(audience="globex-client")).org == globex
    with pytest.raises(Conflict) as taken:
        create(globex, fake_idp, audience="acme-client", name="copy")
    assert taken.value.code == "idp_conflict"


@pytest.mark.parametrize("audience", [["acme-client", "someone-else"], ["acme-client", "acme-client"], []])
def test_a_shared_issuers_token_must_name_exactly_one_audience(fake_idp, settings, audience):
    settings.KEYWARD_SHARED_ISSUERS = [fake_idp.url]
    create(make_org(), fake_idp, audience="acme-client")
    with pytest.raises(TokenInvalid):
        verify_user_token(fake_idp.token(audience=audience))


def test_the_dev_idp_issuers_are_reserved(callers, fake_idp):
    victim_dev_issuer = dev_issuer(callers.other_org.org)
    response = callers.client("admin").post(
        "/v1/idps", connector_body(fake_idp, issuer=victim_dev_issuer, email_domains=[]), format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"] == "issuer_reserved"
    assert ensure_dev_idp(callers.other_org.org).issuer == victim_dev_issuer
    assert IdpIssuer.objects.get(issuer=victim_dev_issuer).org == callers.other_org.org


def test_an_issuer_two_orgs_configured_before_ownership_routes_nothing_until_resolved(fake_idp):
    """Rows from before this rule: the backfill gives the issuer no owner, so neither org's tokens route."""
    first, second = make_org(), make_org()
    for org, audience in ((first, "a"), (second, "b")):
        IdpConnector.objects.create(
            org=org,
            name=audience,
            issuer=fake_idp.url,
            audience=audience,
            jwks_uri=fake_idp.jwks_uri,
            allowed_algorithms=["RS256"],
        )
    backfill = importlib.import_module("keyward.idp.migrations.0003_backfill_issuers_and_domain_claims").backfill
    backfill(apps, None)

    assert not IdpIssuer.objects.filter(issuer=fake_idp.url).exists()
    with pytest.raises(TokenInvalid):
        verify_user_token(fake_idp.token(audience="a"))
    with pytest.raises(Conflict) as taken:
        services.update_connector(IdpConnector.objects.get(org=first), org=first, name="renamed")
    assert taken.value.code == "issuer_taken"

    services.delete_connector(IdpConnector.objects.get(org=second), org=second)  # the operator's fix
    services.update_connector(IdpConnector.objects.get(org=first), org=first, name="renamed")
    assert verify_user_token(fake_idp.token(audience="a")).org == first


def _race_for(issuer: str, orgs: list) -> tuple[list[str], list[BaseException]]:
    """Every org creates a connector for `issuer` at the same moment; the outcome each got."""
    barrier = threading.Barrier(len(orgs))
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def claim(org, n: int) -> None:
        try:
            barrier.wait(timeout=10)
            services.create_connector(
                org=org,
                name="racer",
                issuer=issuer,
                audience=f"aud-{n}",
                jwks_uri="http://127.0.0.1:9/jwks",
                allowed_algorithms=["RS256"],
            )
            outcomes.append("created")
        except Conflict as exc:
            outcomes.append(exc.code)
        except BaseException as exc:  # a failing thread must fail the test, not vanish
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claim, args=(org, n)) for n, org in enumerate(orgs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcomes, errors


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("early_check", [True, False], ids=["as-shipped", "claim-row-alone"])
def test_orgs_racing_for_one_issuer_leave_exactly_one_owner(monkeypatch, early_check):
    """The unique claim row decides: one racer wins, every other gets issuer_taken (never a 500).

    Without the unlocked early check every racer reaches the transactional claim, which must hold alone.
    """
    if not early_check:
        monkeypatch.setattr(services, "ensure_issuer_available", lambda org, issuer: None)
    racers = 4
    for round_number in range(3):
        issuer = f"https://race-{round_number}.example"
        outcomes, errors = _race_for(issuer, [make_org() for _ in range(racers)])

        assert errors == []
        assert sorted(outcomes) == ["created"] + ["issuer_taken"] * (racers - 1)
        owner = IdpIssuer.objects.get(issuer=issuer).org
        assert list(IdpConnector.objects.filter(issuer=issuer).values_list("org", flat=True)) == [owner.pk]
