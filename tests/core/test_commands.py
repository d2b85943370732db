import io
import re

import pytest
from django.core.management import CommandError, call_command

from keyward.accounts.models import Account, Role
from keyward.demo import DEMO_OWNER_EMAIL
from keyward.tenancy.models import Org

pytestmark = pytest.mark.django_db


def without_user_token(text: str) -> str:
    """Each run prints a freshly signed user token; everything else must be the same."""
    return re.sub(r"Bearer [A-Za-z0-9_.-]+", "Bearer <token>", text)


def test_seed_demo_is_idempotent_and_prints_a_working_login(api):
    first, second = io.StringIO(), io.StringIO()
    call_command("seed_demo", stdout=first)
    call_command("seed_demo", stdout=second)

    assert Org.objects.filter(slug="demo").count() == 1
    assert Account.objects.filter(email=DEMO_OWNER_EMAIL, role=Role.OWNER).count() == 1
    out = first.getvalue()
    assert "http://localhost:8000/v1/schema" in out
    assert without_user_token(out) == without_user_token(second.getvalue())
    password = out.split("password: ")[1].split()[0]
    response = api.post("/auth/login", {"email": DEMO_OWNER_EMAIL, "password": password}, format="json")
    assert response.status_code == 200


def test_seed_demo_refuses_outside_dev_mode(settings):
    settings.DEV_MODE = False
    with pytest.raises(CommandError, match="dev mode"):
        call_command("seed_demo")
    assert not Org.objects.exists()


def test_createsuperadmin_reads_the_password_from_stdin(monkeypatch, api):
    monkeypatch.setattr("sys.stdin", io.StringIO("operator passphrase long\n"))
    out = io.StringIO()
    call_command("createsuperadmin", "--email", "Ops@Example.com", "--password-stdin", stdout=out)

    account = Account.objects.get(email="ops@example.com")
    assert account.role == Role.SUPERADMIN
    assert account.org is None
    assert "Created superadmin ops@example.com" in out.getvalue()
    login = api.post("/auth/login", {"email": "ops@example.com", "password": "operator passphrase long"}, format="json")
    assert login.status_code == 200


def test_createsuperadmin_refuses_weak_password_and_duplicates(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    with pytest.raises(CommandError, match="too weak"):
        call_command("createsuperadmin", "--email", "ops@example.com", "--password-stdin")
    monkeypatch.setattr("sys.stdin", io.StringIO("operator passphrase long\n"))
    call_command("createsuperadmin", "--email", "ops@example.com", "--password-stdin", stdout=io.StringIO())
    monkeypatch.setattr("sys.stdin", io.StringIO("operator passphrase long\n"))
    with pytest.raises(CommandError, match="already exists"):
        call_command("createsuperadmin", "--email", "OPS@example.com", "--password-stdin")


@pytest.mark.parametrize("email", ["not-an-email", "ops@", "@example.com", "ops@example.com\nBcc: x@evil.test"])
def test_createsuperadmin_refuses_an_invalid_email(monkeypatch, email):
    monkeypatch.setattr("sys.stdin", io.StringIO("operator passphrase long\n"))
    with pytest.raises(CommandError, match="valid email"):
        call_command("createsuperadmin", "--email", email, "--password-stdin")
    assert not Account.objects.exists()


def test_seed_demo_gives_the_demo_org_a_dev_idp():
    call_command("seed_demo", stdout=io.StringIO())
    call_command("seed_demo", stdout=io.StringIO())
    demo = Org.objects.get(slug="demo")
    assert demo.idp_connectors.filter(kind="dev").count() == 1


def test_seed_demo_prints_a_curl_that_gets_a_credential(api):
    import json
    import shlex

    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    curl = out.getvalue().split("curl -s -X POST http://localhost:8000/v1/credentials")[1].split("\n\n")[0]
    words = shlex.split(curl.replace("\\\n", " "))
    headers = dict(words[i + 1].split(": ", 1) for i, word in enumerate(words) if word == "-H")
    body = words[words.index("-d") + 1]

    response = api.post(
        "/v1/credentials",
        json.loads(body),
        format="json",
        HTTP_AUTHORIZATION=headers["Authorization"],
        HTTP_X_KEYWARD_AGENT=headers["X-Keyward-Agent"],
    )

    assert response.status_code == 200, response.content
    assert response.json()["provider"] == "stripe"
    assert response.json()["scope"] == "charges:read"


def test_createsuperadmin_strips_a_windows_line_ending_from_the_password(monkeypatch, api):
    monkeypatch.setattr("sys.stdin", io.StringIO("operator passphrase long\r\n"))
    call_command("createsuperadmin", "--email", "ops@example.com", "--password-stdin", stdout=io.StringIO())
    login = api.post("/auth/login", {"email": "ops@example.com", "password": "operator passphrase long"}, format="json")
    assert login.status_code == 200


@pytest.mark.parametrize("errors", ["strict", "surrogateescape"])  # surrogateescape: what a C locale does
def test_createsuperadmin_refuses_a_password_that_is_not_utf8(monkeypatch, errors):
    stdin = io.TextIOWrapper(io.BytesIO(b"operator \xffpassphrase long\n"), encoding="utf-8", errors=errors)
    monkeypatch.setattr("sys.stdin", stdin)
    with pytest.raises(CommandError, match="UTF-8") as refused:
        call_command("createsuperadmin", "--email", "ops@example.com", "--password-stdin")
    assert "passphrase" not in str(refused.value)
    assert not Account.objects.exists()


def test_createsuperadmin_without_a_terminal_says_how_to_give_the_password(monkeypatch):
    def no_terminal(prompt: str = "") -> str:
        raise EOFError

    monkeypatch.setattr("getpass.getpass", no_terminal)
    with pytest.raises(CommandError, match="--password-stdin"):
        call_command("createsuperadmin", "--email", "ops@example.com")
    assert not Account.objects.exists()
