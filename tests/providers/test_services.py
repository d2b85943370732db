"""The functions the broker calls to open provider secrets, and what sealing binds a secret to."""

import json
import secrets

import pytest

from keyward.core.exceptions import ServiceError
from keyward.crypto.errors import DecryptionError
from keyward.providers import services
from keyward.providers.models import Provider, ProviderSecret
from tests.factories import make_org

pytestmark = pytest.mark.django_db


OAUTH_CONFIG = {"token_url": "https://auth.example.com/oauth/token", "client_id": "keyward"}


def make_provider(org=None, name: str = "gh", kind: str = "oauth2_client_credentials", secret=None) -> Provider:
    config = OAUTH_CONFIG if kind == "oauth2_client_credentials" else None
    return services.create_provider(org=org or make_org(), name=name, kind=kind, config=config, secret=secret)


def test_current_secret_opens_the_current_version():
    first, second = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    provider = make_provider(secret=first)
    assert services.current_secret(provider) == first.encode()
    provider = services.rotate_secret(provider, secret=second)
    assert services.current_secret(provider) == second.encode()
    assert services.current_secret(Provider.objects.get(pk=provider.pk)) == second.encode()


def test_current_secret_without_a_secret_is_a_clear_error():
    provider = make_provider(secret=None)
    with pytest.raises(ServiceError) as caught:
        services.current_secret(provider)
    assert caught.value.code == "provider_secret_missing"
    assert caught.value.status_code == 409


def test_a_ciphertext_copied_into_another_providers_row_does_not_open():
    org = make_org()
    victim_value = secrets.token_urlsafe(32)
    victim = make_provider(org, "victim", secret=victim_value)
    attacker = make_provider(org, "attacker", secret=secrets.token_urlsafe(32))
    stolen = ProviderSecret.objects.get(provider=victim, version=1)
    ProviderSecret.objects.filter(provider=attacker, version=1).update(
        ciphertext=stolen.ciphertext, wrapped_key=stolen.wrapped_key, kek_id=stolen.kek_id
    )

    row = ProviderSecret.objects.get(provider=attacker, version=1)
    with pytest.raises(DecryptionError) as caught:
        row.unseal_secret()
    assert victim_value not in str(caught.value)
    with pytest.raises(ServiceError) as refused:
        services.current_secret(attacker)
    assert refused.value.code == "provider_secret_unreadable"
    assert victim_value not in refused.value.message
    assert services.current_secret(victim) == victim_value.encode()


def test_a_ciphertext_copied_into_another_orgs_provider_or_version_does_not_open():
    victim = make_provider(make_org(), "gh", secret="victim secret value")
    other_org = make_provider(make_org(), "gh", secret="other secret value")
    stolen = ProviderSecret.objects.get(provider=victim, version=1)
    ProviderSecret.objects.filter(provider=other_org).update(
        ciphertext=stolen.ciphertext, wrapped_key=stolen.wrapped_key, kek_id=stolen.kek_id
    )
    with pytest.raises(DecryptionError):
        ProviderSecret.objects.get(provider=other_org).unseal_secret()

    victim = services.rotate_secret(victim, secret="second value")
    ProviderSecret.objects.filter(provider=victim, version=2).update(
        ciphertext=stolen.ciphertext, wrapped_key=stolen.wrapped_key, kek_id=stolen.kek_id
    )
    with pytest.raises(ServiceError) as refused:
        services.current_secret(victim)
    assert refused.value.code == "provider_secret_unreadable"


def test_static_secret_for_scope_hands_out_exactly_that_scopes_value():
    values = {
        "charges:read": "rk_live_read_" + secrets.token_hex(8),
        "refunds:write": "rk_live_w_" + secrets.token_hex(8),
    }
    provider = make_provider(name="stripe", kind="static", secret=values)
    assert services.static_secret_for_scope(provider, "charges:read") == values["charges:read"]
    assert services.static_secret_for_scope(provider, "refunds:write") == values["refunds:write"]
    for scope in ("charges:write", "charges:*", "*", "charges"):
        with pytest.raises(ServiceError) as refused:
            services.static_secret_for_scope(provider, scope)
        assert refused.value.code == "scope_not_allowed"
        assert all(value not in refused.value.message for value in values.values())


def test_static_secret_for_scope_follows_rotation():
    provider = make_provider(name="stripe", kind="static", secret={"charges:read": "old"})
    provider = services.rotate_secret(provider, secret=json.dumps({"charges:read": "new", "extra:scope": "x"}))
    assert services.static_secret_for_scope(provider, "charges:read") == "new"
    assert provider.scopes == ["charges:read", "extra:scope"]


def test_static_secret_for_scope_refuses_other_kinds():
    with pytest.raises(ServiceError) as refused:
        services.static_secret_for_scope(make_provider(secret="x"), "charges:read")
    assert refused.value.code == "provider_kind_mismatch"


def test_a_prepared_secret_does_not_print_its_value():
    from keyward.providers.kinds import prepare_secret

    prepared = prepare_secret("oauth2_client_credentials", "hunter2-but-long-and-random")
    assert "hunter2" not in repr(prepared)
    assert "hunter2" not in str(prepared)
