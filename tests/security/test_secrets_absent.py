"""Secrets absent: one run handles every kind of secret keyward touches; none may leak anywhere.

The run signs in (also with a wrong password, and with the password typed into the email field),
enables TOTP and signs in with it, creates providers through the API and issues a credential of
every kind that runs locally (keyward_jwt and a delegated one, static, github_app, both OAuth 2.0
kinds, against the 127.0.0.1 stubs, one of them echoing its client secret in an error answer),
rotates a provider secret, revokes a GitHub token upstream, presents a forged user token, makes an
introspection key and introspects, sets a SIEM destination (its URL carrying a token) and an
approval webhook, and lets both deliver.

Then every log line at DEBUG (the root logger, as KEYWARD_LOG_LEVEL=DEBUG configures it), every
audit row, every row of keyward's own tables, every payload sent to the SIEM and the webhook, and
every response are searched for each secret, also base64-, URL- and JSON-encoded. A secret keyward
hands out (a credential, a session token, the TOTP secret, an introspection key) may appear in the
one response that hands it out; every other secret in none.
"""

import base64
import json
import logging
import secrets as random
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus

import pytest
from cryptography.hazmat.primitives import serialization
from django.apps import apps
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from keyward.accounts.models import Account, Role
from keyward.audit.models import AuditEvent
from keyward.policies.models import Effect, Policy
from tests.broker.conftest import make_agent
from tests.broker.minters import setups
from tests.broker.minters.stubs import FakeGitHub, FakeTokenEndpoint, Reply
from tests.security import forge
from tests.security.otp import STEP, code_at, pinned_otp_clock
from tests.siem.receiver import SiemReceiver

pytestmark = pytest.mark.django_db


class RecordingClient(APIClient):
    """An API client that keeps every response, so none can carry a secret unnoticed."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, raise_request_exception=False, **kwargs)
        self.responses = []

    def request(self, **kwargs):
        response = super().request(**kwargs)
        self.responses.append(response)
        return response


@dataclass
class Secret:
    name: str
    value: str
    handed_out: int  # how many responses may carry it: 1 for what keyward hands out, 0 for what it is given

    def forms(self) -> set[str]:
        """The value as it could be smuggled out: plain, base64 (both alphabets), URL- and JSON-encoded."""
        raw = self.value.encode()
        forms = {
            self.value,
            quote(self.value, safe=""),
            quote_plus(self.value),
            json.dumps(self.value)[1:-1],
            json.dumps(self.value, ensure_ascii=False)[1:-1],
            base64.b64encode(raw).decode(),
            base64.b64encode(raw).decode().rstrip("="),
            base64.urlsafe_b64encode(raw).decode().rstrip("="),
        }
        return {form for form in forms if len(form) >= 12}


@dataclass
class Secrets:
    items: list[Secret] = field(default_factory=list)

    def given(self, name: str, value: str) -> str:
        self.items.append(Secret(name, value, handed_out=0))
        return value

    def handed_out(self, name: str, value: str) -> str:
        assert value, f"{name} is empty"
        self.items.append(Secret(name, value, handed_out=1))
        return value

    def found_in(self, text: str) -> list[str]:
        return [secret.name for secret in self.items if any(form in text for form in secret.forms())]


def a_secret(prefix: str) -> str:
    """A value nobody could find by chance; with the characters that need escaping in URLs and JSON."""
    return f'{prefix}-{random.token_urlsafe(18)}:/+ &="é'


def pem_body_line(pem: str) -> str:
    """A line from the middle of a PEM: the key material itself, whatever wraps it."""
    lines = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    return lines[len(lines) // 2]


def logged_text(caplog) -> str:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(record) for record in caplog.records)


def _as_text(value) -> str:
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return str(value)


def keyward_tables() -> dict[str, str]:
    """Every row of keyward's own tables, as text (sealed columns as hex: ciphertext only)."""
    tables = {}
    for model in apps.get_models():
        if model.__module__.startswith(("keyward.", "broker.")):
            rows = list(model.objects.all().values())
            tables[model._meta.label] = json.dumps(rows, default=_as_text, ensure_ascii=False)
    return tables


def response_text(response) -> str:
    headers = "\n".join(f"{name}: {value}" for name, value in response.items())
    return headers + "\n" + response.content.decode(errors="replace")


class Run:
    """The scenario's moving parts: the recording client, the org's owner, and what was collected."""

    def __init__(self, world, stubs, local_server) -> None:
        self.world, self.stubs, self.local_server = world, stubs, local_server
        self.client = RecordingClient()
        world.client = self.client
        self.secrets = Secrets()
        self.session = ""
        self.outbound: list[bytes] = []

    def admin(self, method: str, path: str, body=None):
        response = getattr(self.client, method)(path, body, format="json", HTTP_AUTHORIZATION=f"Bearer {self.session}")
        assert response.status_code < 300, (path, response.status_code, response.content[:300])
        return response

    def issue(self, **ask) -> dict:
        response = self.world.ask(**ask)
        assert response.status_code == 200, response.content[:300]
        body = response.json()
        self.secrets.handed_out(f"credential {body['provider']}", body["credential"])
        self.secrets.handed_out(f"delegation token {body['provider']}", body["delegation"]["token"])
        return body

    # --- the steps ---------------------------------------------------------------------------

    def sign_in(self, clock) -> None:
        password = self.secrets.given("password", a_secret("pw"))
        owner = Account.objects.create_account(
            email="owner@acme.example", password=password, org=self.world.org, role=Role.OWNER
        )
        wrong = self.secrets.given("wrong password", a_secret("wrong-pw"))
        assert (
            self.client.post("/auth/login", {"email": owner.email, "password": wrong}, format="json").status_code == 401
        )
        misplaced = self.client.post("/auth/login", {"email": password, "password": password}, format="json")
        assert misplaced.status_code in (400, 401)
        login = self.client.post("/auth/login", {"email": owner.email, "password": password}, format="json")
        self.session = self.secrets.handed_out("session token", login.json()["token"])

        setup = self.admin("post", "/auth/2fa/setup").json()
        self.secrets.handed_out("TOTP secret", setup["secret"])
        key = TOTPDevice.objects.get(user=owner).key
        self.secrets.given("TOTP key (hex)", key)  # django-otp's own table keeps it: not scanned there
        self.admin("post", "/auth/2fa/enable", {"code": code_at(key, clock.time.return_value)})
        clock.time.return_value += STEP
        body = {"email": owner.email, "password": password, "totp": code_at(key, clock.time.return_value)}
        second = self.client.post("/auth/login", body, format="json")
        assert second.status_code == 200, second.content
        self.session = self.secrets.handed_out("2FA session token", second.json()["token"])

    def static_provider_rotated(self) -> None:
        old = self.secrets.given("static secret v1", a_secret("sk_live_old"))
        new = self.secrets.given("static secret v2", a_secret("sk_live_new"))
        self.admin("post", "/v1/secrets", {"name": "vault", "kind": "static", "secret": {"charges:read": old}})
        self.admin("post", "/v1/secrets/vault/rotate", {"secret": {"charges:read": new}})
        setups.give_grant(self.world, "vault")
        issued = self.world.ask({"provider": "vault", "scope": "charges:read"})
        assert issued.status_code == 200, issued.content[:300]
        assert issued.json()["credential"] == new
        self.secrets.items[-1].handed_out = 1  # the static secret is the credential: handed out once
        self.secrets.handed_out("delegation token vault", issued.json()["delegation"]["token"])

    def github(self) -> None:
        pem = setups.app_private_key_pem()
        self.secrets.given("GitHub app private key", pem_body_line(pem))
        private = serialization.load_pem_private_key(pem.encode(), password=None)
        fake = FakeGitHub(
            app_id=setups.APP_ID,
            installation_id=setups.INSTALLATION_ID,
            public_key=private.public_key(),
            granted={"contents": "write", "metadata": "read"},
        )
        server = self.stubs.start(fake)
        config = {"app_id": setups.APP_ID, "installation_id": setups.INSTALLATION_ID, "api_url": server.url()}
        self.admin("post", "/v1/secrets", {"name": "github", "kind": "github_app", "config": config, "secret": pem})
        setups.give_grant(self.world, "github")
        issued = self.issue(body={"provider": "github", "scope": "contents:read"})
        self.admin("post", f"/v1/issued/{issued['credential_id']}/revoke", {"reason": "done"})

    def oauth_client_credentials(self) -> None:
        client_secret = self.secrets.given("OAuth client secret", a_secret("cs"))
        fake = FakeTokenEndpoint(
            client_id=setups.CLIENT_ID,
            client_secret=client_secret,
            auth_method="client_secret_basic",
            grant_type=setups.GRANT_CLIENT_CREDENTIALS,
            scopes=setups.OAUTH_SCOPES,
        )
        server = self.stubs.start(fake)
        config = {"token_url": server.url("/oauth/token"), "client_id": setups.CLIENT_ID}
        body = {"name": "billing", "kind": "oauth2_client_credentials", "config": config, "secret": client_secret}
        self.admin("post", "/v1/secrets", body)
        setups.give_grant(self.world, "billing")
        # A provider that echoes the client secret in its error answer: keyward keeps only a code.
        fake.fail_with = Reply(400, {"error": client_secret, "error_description": f"bad secret {client_secret}"})
        echoed = self.world.ask({"provider": "billing", "scope": "invoices:read"})
        assert echoed.status_code == 502, echoed.content[:300]
        fake.fail_with = None
        self.issue(body={"provider": "billing", "scope": "invoices:read"})

    def token_exchange(self) -> None:
        exchange = setups.oauth2_token_exchange(self.world, self.stubs)
        self.secrets.given("token-exchange client secret", setups.CLIENT_SECRET)
        user_token = self.secrets.given("user token (exchanged)", self.world.user_token(sub="carol@acme.example"))
        exchange.subject_tokens.append(user_token)
        self.issue(body={"provider": "downstream", "scope": "invoices:read"}, token=user_token)
        self.secrets.given("actor token", exchange.fake.forms[-1]["actor_token"])

    def keyward_jwt_and_delegation(self) -> dict:
        user_token = self.secrets.given("user token", self.world.user_token())
        root = self.issue(token=user_token)
        make_agent(self.world.org, "sub-bot")
        self.issue(agent="sub-bot", token=None, delegation=root["delegation"]["token"])
        forged = self.secrets.given("forged user token", forge.tampered(user_token, sub="mallory@example.com"))
        assert self.world.ask(token=forged).status_code == 401
        return root

    def introspection(self, credential: str) -> None:
        created = self.admin("post", "/v1/introspection-keys", {"name": "resource-server"}).json()
        key = self.secrets.handed_out("introspection key", created["key"])
        answer = self.client.post(
            "/v1/introspect", {"token": credential}, format="json", HTTP_AUTHORIZATION=f"Bearer {key}"
        )
        assert answer.json()["active"] is True

    def siem(self) -> SiemReceiver:
        secret = self.secrets.given("SIEM secret", a_secret("siem-secret-long-enough-for-hmac"))
        receiver = SiemReceiver(secret)
        url_token = self.secrets.given("SIEM URL token", random.token_urlsafe(24))
        self.admin("put", "/v1/siem", {"url": f"{receiver.url()}?token={url_token}", "secret": secret})
        assert self.admin("get", "/v1/siem").json()["host"]
        return receiver

    def approval_webhook(self):
        secret = self.secrets.given("approval webhook secret", a_secret("whsec"))
        hook = self.local_server()
        hook.respond("/hook", status=204)
        self.admin("put", "/v1/approvals/webhook", {"url": hook.url("/hook"), "secret": secret})
        Policy.objects.create(
            org=self.world.org, provider="stripe", scope="charges:write", effect=Effect.REQUIRE_APPROVAL
        )
        parked = self.world.ask({"provider": "stripe", "scope": "charges:write"})
        assert parked.status_code == 202, parked.content
        return hook


def test_no_secret_reaches_a_log_an_audit_row_a_table_a_payload_or_another_response(
    world, stubs, local_server, loopback_only, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.DEBUG)
    run = Run(world, stubs, local_server)
    with pinned_otp_clock() as clock, django_capture_on_commit_callbacks(execute=True):
        run.sign_in(clock)
        receiver = run.siem()
        hook = run.approval_webhook()
        root = run.keyward_jwt_and_delegation()
        run.static_provider_rotated()
        run.github()
        run.oauth_client_credentials()
        run.token_exchange()
        run.introspection(root["credential"])
    receiver.stop()

    secrets = run.secrets
    assert len(secrets.items) >= 25
    assert caplog.records, "nothing was logged: the log scan would prove nothing"
    assert receiver.received, "the SIEM must have been sent something"
    assert hook.bodies, "the webhook must have been sent something"

    leaks = {"logs": secrets.found_in(logged_text(caplog))}
    audit_rows = list(AuditEvent.objects.order_by("id").values())
    assert len(audit_rows) >= 20
    leaks["audit rows"] = secrets.found_in(json.dumps(audit_rows, default=str, ensure_ascii=False))
    for table, text in keyward_tables().items():
        leaks[f"table {table}"] = secrets.found_in(text)
    leaks["SIEM payloads"] = secrets.found_in("\n".join(item.body.decode() for item in receiver.received))
    leaks["webhook payloads"] = secrets.found_in("\n".join(body.decode() for body in hook.bodies))
    assert {where: names for where, names in leaks.items() if names} == {}

    texts = [response_text(response) for response in run.client.responses]
    carried = {
        secret.name: sum(any(form in text for form in secret.forms()) for text in texts) for secret in secrets.items
    }
    expected = {secret.name: secret.handed_out for secret in secrets.items}
    assert carried == expected
