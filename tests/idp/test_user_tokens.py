"""End-user tokens: the dev IdP issues them; `verify_user_token` picks the org by `iss` + `aud`."""

import io
import time

import jwt
import pytest
from django.core.management import CommandError, call_command

from keyward.idp import services
from keyward.idp.dev import DEV_AUDIENCE, dev_issuer, ensure_dev_idp, issue_dev_user_token
from keyward.idp.models import DevIdpKey, IdpConnector
from keyward.idp.verification import verify_user_token
from keyward.jose.errors import TokenFailure, TokenInvalid
from keyward.jose.types import TokenType
from tests.factories import make_org

pytestmark = pytest.mark.django_db


def connector_for(org, fake_idp, audience="keyward-broker"):
    return services.create_connector(
        org=org,
        name=f"idp-{audience}",
        issuer=fake_idp.url,
        audience=audience,
        jwks_uri=fake_idp.jwks_uri,
        allowed_algorithms=["RS256"],
    )


def test_a_real_idp_token_selects_its_org(fake_idp, other_idp):
    acme, globex = make_org("Acme"), make_org("Globex")
    connector_for(acme, fake_idp)
    connector_for(globex, other_idp)

    user = verify_user_token(other_idp.token(sub="carol@globex.com"))

    assert user.org == globex
    assert user.subject == "carol@globex.com"
    assert other_idp.http.count("/jwks") == 1
    assert fake_idp.http.count("/jwks") == 0


def test_a_shared_issuers_token_selects_its_org_by_audience(fake_idp, settings):
    settings.KEYWARD_SHARED_ISSUERS = [fake_idp.url]
    acme, globex = make_org("Acme"), make_org("Globex")
    connector_for(acme, fake_idp, audience="acme-broker")
    connector_for(globex, fake_idp, audience="globex-broker")

    assert verify_user_token(fake_idp.token(audience="globex-broker")).org == globex
    assert verify_user_token(fake_idp.token(audience=["acme-broker"])).org == acme


def test_unknown_issuer_or_audience_is_refused(fake_idp):
    connector_for(make_org(), fake_idp)
    with pytest.raises(TokenInvalid) as unknown_aud:
        verify_user_token(fake_idp.token(audience="nobody"))
    assert unknown_aud.value.reason in {TokenFailure.WRONG_ISSUER, TokenFailure.WRONG_AUDIENCE}


def test_a_token_whose_audiences_name_two_orgs_is_refused(fake_idp, settings):
    settings.KEYWARD_SHARED_ISSUERS = [fake_idp.url]
    connector_for(make_org(), fake_idp, audience="a")
    connector_for(make_org(), fake_idp, audience="b")
    with pytest.raises(TokenInvalid) as refused:
        verify_user_token(fake_idp.token(audience=["a", "b"]))
    assert refused.value.reason == TokenFailure.WRONG_AUDIENCE


def test_a_token_whose_audiences_name_two_connectors_of_the_owning_org_is_refused(fake_idp):
    org = make_org()
    connector_for(org, fake_idp, audience="a")
    connector_for(org, fake_idp, audience="b")
    assert verify_user_token(fake_idp.token(audience=["a", "unrelated"])).connector.audience == "a"
    with pytest.raises(TokenInvalid) as refused:
        verify_user_token(fake_idp.token(audience=["a", "b"]))
    assert refused.value.reason == TokenFailure.WRONG_AUDIENCE


def test_a_token_signed_by_another_key_for_a_known_issuer_is_refused(fake_idp):
    from cryptography.hazmat.primitives.asymmetric import rsa

    connector_for(make_org(), fake_idp)
    now = int(time.time())
    forged = jwt.encode(
        {"iss": fake_idp.url, "aud": "keyward-broker", "sub": "mallory", "exp": now + 60},
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        algorithm="RS256",
        headers={"kid": "idp-1"},
    )
    with pytest.raises(TokenInvalid) as refused:
        verify_user_token(forged)
    assert refused.value.reason == TokenFailure.BAD_SIGNATURE


def test_a_token_without_sub_is_refused(fake_idp):
    connector_for(make_org(), fake_idp)
    token = fake_idp.token()
    payload = jwt.decode(token, options={"verify_signature": False})
    del payload["sub"]
    with pytest.raises(TokenInvalid):
        verify_user_token(jwt.encode(payload, "x" * 32, algorithm="HS256"))


def test_the_dev_idp_issues_tokens_that_verify_for_its_org():
    org = make_org()
    token = issue_dev_user_token(org, subject="alice@example.com", ttl_seconds=600)

    user = verify_user_token(token)

    assert user.org == org
    assert user.connector.kind == "dev"
    assert user.claims["iss"] == dev_issuer(org)
    assert user.claims["aud"] == DEV_AUDIENCE
    assert user.claims["email"] == "alice@example.com"
    assert user.claims["exp"] - user.claims["iat"] == 600


def test_each_org_gets_its_own_dev_idp_and_key():
    first, second = make_org(), make_org()
    a, b = ensure_dev_idp(first), ensure_dev_idp(second)
    assert a.issuer != b.issuer
    assert a.dev_key.kid != b.dev_key.kid
    assert ensure_dev_idp(first).pk == a.pk
    assert DevIdpKey.objects.count() == 2


def test_dev_idp_private_key_is_sealed_to_its_org():
    key = ensure_dev_idp(make_org()).dev_key
    assert b"PRIVATE" not in bytes(key.ciphertext)
    assert "d" not in key.public_jwk
    assert key.unseal_secret().startswith(b"0")  # DER SEQUENCE


def test_outside_dev_mode_dev_tokens_are_not_accepted(settings):
    token = issue_dev_user_token(make_org(), subject="alice")
    settings.DEV_MODE = False
    with pytest.raises(TokenInvalid):
        verify_user_token(token)


def test_a_keyward_credential_is_not_a_user_token():
    from keyward.crypto.signing import sign_token

    org = make_org()
    connector = ensure_dev_idp(org)
    now = int(time.time())
    credential = sign_token(
        {"iss": connector.issuer, "aud": connector.audience, "sub": "alice", "exp": now + 60}, TokenType.CREDENTIAL
    )
    with pytest.raises(TokenInvalid):
        verify_user_token(credential)


def test_issue_user_token_command_prints_a_verifiable_token():
    org = make_org()
    out = io.StringIO()
    call_command("issue_user_token", "--org", org.slug, "--sub", "bob@example.com", "--ttl", "5m", stdout=out)
    user = verify_user_token(out.getvalue().strip())
    assert user.subject == "bob@example.com"
    assert user.claims["exp"] - user.claims["iat"] == 300


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--org", "nope", "--sub", "a"], "No org"),
        (["--sub", "a", "--ttl", "soon"], "--ttl"),
        (["--sub", "a", "--ttl", "2d"], "--ttl"),
        (["--sub", "a", "--ttl", "25h"], "--ttl"),
    ],
)
def test_issue_user_token_command_errors(args, message):
    org = make_org()
    if "--org" not in args:
        args = ["--org", org.slug, *args]
    with pytest.raises(CommandError, match=message):
        call_command("issue_user_token", *args)


def test_issue_user_token_refuses_outside_dev_mode(settings):
    org = make_org()
    settings.DEV_MODE = False
    with pytest.raises(CommandError, match="dev mode"):
        call_command("issue_user_token", "--org", org.slug, "--sub", "a")
    assert not IdpConnector.objects.exists()
