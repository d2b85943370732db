import io
import json
import logging
import secrets

import pytest
from django.core.management import CommandError, call_command

from keyward.audit.models import AuditEvent
from keyward.providers import services
from keyward.providers.models import Provider, ProviderSecret
from tests.factories import make_org, make_rsa_private_key_pem

pytestmark = pytest.mark.django_db

NEW_SECRET = "ghs_new_" + "f3" * 20
OAUTH_CONFIG = {"token_url": "https://auth.example.com/oauth/token", "client_id": "keyward"}


@pytest.fixture
def provider():
    org = make_org()
    return services.create_provider(
        org=org, name="gh", kind="oauth2_client_credentials", config=OAUTH_CONFIG, secret="ghs_old_" + "a1" * 20
    )


def rotate(monkeypatch, org: str, name: str, stdin: str) -> str:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    out = io.StringIO()
    call_command("rotate_secret", "--org", org, "--provider", name, stdout=out)
    return out.getvalue()


def test_rotates_from_stdin_prints_version_and_fingerprint_and_audits(monkeypatch, provider, caplog):
    caplog.set_level(logging.DEBUG)
    out = rotate(monkeypatch, provider.org.slug, "gh", NEW_SECRET + "\n")

    provider.refresh_from_db()
    row = ProviderSecret.objects.get(provider=provider, version=2)
    assert provider.secret_version == 2
    assert row.unseal_secret() == NEW_SECRET.encode()
    assert "version 2" in out
    assert f"fingerprint {row.fingerprint}" in out
    assert NEW_SECRET not in out
    assert NEW_SECRET not in caplog.text
    event = AuditEvent.objects.get(event_type="provider.secret_rotated")
    assert event.actor_type == "system"
    assert event.actor_name == "manage.py rotate_secret"
    assert event.provider == "gh"
    assert event.org == provider.org
    assert NEW_SECRET not in json.dumps(list(AuditEvent.objects.values()), default=str)


def test_only_one_trailing_newline_is_stripped(monkeypatch):
    org = make_org()
    config = {"app_id": 1, "installation_id": 2}
    services.create_provider(org=org, name="app", kind="github_app", config=config, secret=make_rsa_private_key_pem())
    new_key = make_rsa_private_key_pem()  # PEM: several lines, ending with a newline
    rotate(monkeypatch, org.slug, "app", new_key + "\n")
    assert services.current_secret(Provider.objects.get(name="app")) == new_key.encode()


def test_a_static_provider_reads_a_json_object(monkeypatch):
    org = make_org()
    services.create_provider(org=org, name="stripe", kind="static", secret={"charges:read": "rk_old"})
    rotate(monkeypatch, org.slug, "stripe", '{"charges:read": "rk_new", "refunds:write": "rk_w"}\n')
    provider = Provider.objects.get(name="stripe")
    assert provider.scopes == ["charges:read", "refunds:write"]
    assert services.static_secret_for_scope(provider, "refunds:write") == "rk_w"


@pytest.mark.parametrize(
    ("org", "name", "stdin", "message"),
    [
        ("no-such-org", "gh", NEW_SECRET, "No provider"),
        (None, "no-such-provider", NEW_SECRET, "No provider"),
        (None, "gh", "", "empty"),
        (None, "gh", "\n", "empty"),
    ],
)
def test_errors_exit_non_zero_with_a_clear_message(monkeypatch, provider, org, name, stdin, message):
    with pytest.raises(CommandError, match=message):
        rotate(monkeypatch, org or provider.org.slug, name, stdin)
    assert Provider.objects.get(pk=provider.pk).secret_version == 1
    assert not AuditEvent.objects.filter(event_type="provider.secret_rotated").exists()


def test_another_orgs_provider_is_not_found_by_its_name(monkeypatch, provider):
    other = make_org()
    with pytest.raises(CommandError, match="No provider"):
        rotate(monkeypatch, other.slug, "gh", NEW_SECRET)


@pytest.mark.parametrize("stdin", ["not json", '["charges:read"]', '{"charges:*": "rk_live_secretvalue"}', "{}"])
def test_invalid_static_json_is_refused_without_echoing_it(monkeypatch, stdin):
    org = make_org()
    services.create_provider(org=org, name="stripe", kind="static", secret={"charges:read": "rk_old"})
    with pytest.raises(CommandError, match=r"static secret|not a scope") as refused:
        rotate(monkeypatch, org.slug, "stripe", stdin)
    assert "rk_live_secretvalue" not in str(refused.value)
    assert Provider.objects.get(name="stripe").secret_version == 1


def test_a_keyward_jwt_provider_is_refused(monkeypatch):
    org = make_org()
    services.create_provider(org=org, name="internal", kind="keyward_jwt")
    with pytest.raises(CommandError, match="take no secret"):
        rotate(monkeypatch, org.slug, "internal", NEW_SECRET)


def test_the_same_secret_again_changes_nothing_and_says_so(monkeypatch, provider):
    first = rotate(monkeypatch, provider.org.slug, "gh", NEW_SECRET + "\n")
    again = rotate(monkeypatch, provider.org.slug, "gh", NEW_SECRET + "\n")

    assert "version 2" in first
    assert "Unchanged" in again
    assert "version 2" in again
    assert NEW_SECRET not in again
    assert Provider.objects.get(pk=provider.pk).secret_version == 2
    assert AuditEvent.objects.filter(event_type="provider.secret_rotated").count() == 1


def test_the_same_static_mapping_in_another_order_is_the_same_secret(monkeypatch):
    org = make_org()
    services.create_provider(org=org, name="stripe", kind="static", secret={"a:read": "rk_a", "b:read": "rk_b"})
    assert "Unchanged" in rotate(monkeypatch, org.slug, "stripe", '{"b:read": "rk_b", "a:read": "rk_a"}')
    assert Provider.objects.get(name="stripe").secret_version == 1


def test_an_unreadable_current_secret_is_replaced_even_by_the_same_value(monkeypatch, provider, settings):
    rotate(monkeypatch, provider.org.slug, "gh", NEW_SECRET)
    settings.KEYWARD_MASTER_KEY, settings.KEYWARD_MASTER_KEY_PREVIOUS = secrets.token_bytes(32), ()  # versions lost
    out = rotate(monkeypatch, provider.org.slug, "gh", NEW_SECRET)
    assert "version 3" in out
    assert services.current_secret(Provider.objects.get(pk=provider.pk)) == NEW_SECRET.encode()


@pytest.mark.parametrize("stdin", [" ", "   \n", "\t\r\n"])
def test_a_blank_secret_is_refused_as_empty(monkeypatch, provider, stdin):
    with pytest.raises(CommandError, match="empty"):
        rotate(monkeypatch, provider.org.slug, "gh", stdin)
    assert Provider.objects.get(pk=provider.pk).secret_version == 1


class TerminalStdin(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("stdin", [TerminalStdin(NEW_SECRET + "\n"), None], ids=["terminal", "closed"])
def test_a_terminal_or_closed_stdin_is_refused_rather_than_waited_on(monkeypatch, provider, stdin):
    monkeypatch.setattr("sys.stdin", stdin)
    with pytest.raises(CommandError, match="pipe") as refused:
        call_command("rotate_secret", "--org", provider.org.slug, "--provider", "gh", stdout=io.StringIO())
    assert NEW_SECRET not in str(refused.value)
    assert Provider.objects.get(pk=provider.pk).secret_version == 1


def test_stdin_that_is_not_utf8_is_refused_without_a_traceback(monkeypatch, provider):
    undecodable = io.TextIOWrapper(io.BytesIO(b"ghs_\xffSECRETPART\n"), encoding="utf-8", errors="strict")
    monkeypatch.setattr("sys.stdin", undecodable)
    with pytest.raises(CommandError, match="UTF-8") as refused:
        call_command("rotate_secret", "--org", provider.org.slug, "--provider", "gh", stdout=io.StringIO())
    assert "SECRETPART" not in str(refused.value)
    assert Provider.objects.get(pk=provider.pk).secret_version == 1


def test_undecodable_bytes_passed_through_by_the_locale_are_refused(monkeypatch):
    """Under a C/POSIX locale Python hands bad bytes on as lone surrogates (surrogateescape); a static
    secret would store them, and every credential it hands out would be broken."""
    org = make_org()
    services.create_provider(org=org, name="stripe", kind="static", secret={"charges:read": "rk_old"})
    with pytest.raises(CommandError, match="UTF-8") as refused:
        rotate(monkeypatch, org.slug, "stripe", '{"charges:read": "rk_\udcffSECRETPART"}\n')
    assert "SECRETPART" not in str(refused.value)
    assert Provider.objects.get(name="stripe").secret_version == 1
