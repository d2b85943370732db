"""Tenancy, generated from the OpenAPI schema: another org's objects do not exist for you.

Every operation of the live schema whose path has a parameter is called by org A's owner with the
ids and names of org B's objects, for every method it has. Each answer must be a 404 that is
byte-for-byte the answer for an id that exists nowhere (modulo the request id), after the same number
of database queries (no existence oracle), and org B's rows must be unchanged afterwards.

The routes come from the schema, so a new route is tested the day it is added. A path parameter
this test does not know how to fill FAILS its case: teach `OBJECT_IDS` what it names.
"""

import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from broker.registry import create_introspection_key
from keyward.accounts.models import Role
from keyward.idp import services as idp_services
from keyward.policies.models import Effect, Policy
from keyward.tenancy.models import Org
from tests.broker.conftest import World, allow, make_agent, make_provider
from tests.factories import make_account, make_session_token
from tests.security.rows import org_rows

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")
SESSION = {"sessionToken": []}


def _schema_operations() -> list[tuple[str, str, dict]]:
    """(method, path template, operation) for every operation of the live schema with a path parameter."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    found = []
    for path, item in schema["paths"].items():
        for method in METHODS:
            operation = item.get(method)
            if operation and any(param["in"] == "path" for param in operation.get("parameters", [])):
                found.append((method, path, operation))
    return found


OPERATIONS = _schema_operations()


@dataclass
class Tenant:
    """One org with one of every kind of object an admin route can address, and its owner's client."""

    org: Org
    client: APIClient
    member_email: str
    agent_id: int
    agent_name: str
    approval_id: str
    export_id: str
    download_sig: str
    idp_id: int
    domain: str
    introspection_key_id: int
    jti: str
    policy_id: int
    provider_name: str

    @property
    def names(self) -> list[str]:
        """Strings that would only appear in an answer that leaked this org's data."""
        return [self.org.name, self.org.slug, self.member_email, self.agent_name, self.provider_name, self.domain]


def populate(org: Org, owner, prefix: str, capture_on_commit) -> Tenant:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_session_token(owner)}")
    member = make_account(org, Role.VIEWER, email=f"{prefix}-member@example.com")
    agent = make_agent(org, f"{prefix}-bot")
    provider = make_provider(org, f"{prefix}-stripe")
    agent.grants = [{"provider": provider.name, "scopes": ["*"], "environments": ["prod"]}]
    agent.save()
    allow(org, provider=provider.name, scope="charges:read")
    policy = Policy.objects.create(
        org=org, provider=provider.name, scope="charges:write", effect=Effect.REQUIRE_APPROVAL
    )
    world = World(org=org, agent=agent, provider=provider, client=APIClient())
    issued = world.ask({"provider": provider.name, "scope": "charges:read"}, agent=agent.name)
    parked = world.ask({"provider": provider.name, "scope": "charges:write"}, agent=agent.name)
    assert (issued.status_code, parked.status_code) == (200, 202), (issued.content, parked.content)
    connector = idp_services.create_connector(
        org=org,
        name=f"{prefix}-idp",
        issuer=f"https://{prefix}.idp.example.com",
        audience="keyward",
        jwks_uri=f"https://{prefix}.idp.example.com/jwks",
        allowed_algorithms=["RS256"],
        email_domains=[f"{prefix}.example"],
    )
    with capture_on_commit(execute=True):
        export = client.post("/v1/audit/exports", {}, format="json")
    assert export.status_code == 202, export.content
    export_id = export.json()["export_id"]
    link = client.get(f"/v1/audit/exports/{export_id}").json()["download_url"]
    return Tenant(
        org=org,
        client=client,
        member_email=member.email,
        agent_id=agent.pk,
        agent_name=agent.name,
        approval_id=parked.json()["approval_id"],
        export_id=export_id,
        download_sig=parse_qs(urlsplit(link).query)["sig"][0],
        idp_id=connector.pk,
        domain=f"{prefix}.example",
        introspection_key_id=create_introspection_key(org, name=f"{prefix}-rs").record.pk,
        jti=issued.json()["credential_id"],
        policy_id=policy.pk,
        provider_name=provider.name,
    )


# What each path parameter names, by the collection it follows and its own name: its values in a
# tenant (an agent is addressed by id or by name), and one that exists in no org.
OBJECT_IDS: dict[tuple[str, str], tuple[Callable[[Tenant], list], object]] = {
    ("admins", "email"): (lambda t: [t.member_email, t.member_email.upper()], "nobody@example.com"),
    ("agents", "agent"): (lambda t: [t.agent_id, t.agent_name], "no-such-agent"),
    ("approvals", "id"): (lambda t: [t.approval_id], "apr_" + "0" * 32),
    ("exports", "id"): (lambda t: [t.export_id], "exp_" + "0" * 32),
    ("exports", "export_id"): (lambda t: [t.export_id], "exp_" + "0" * 32),
    ("idps", "id"): (lambda t: [t.idp_id], 2**31 - 1),
    ("domains", "domain"): (lambda t: [t.domain], "nowhere.example"),
    ("introspection-keys", "id"): (lambda t: [t.introspection_key_id], 2**31 - 1),
    ("issued", "jti"): (lambda t: [t.jti], "f" * 32),
    ("policies", "id"): (lambda t: [t.policy_id], 2**31 - 1),
    ("secrets", "name"): (lambda t: [t.provider_name], "no-such-provider"),
}

# A valid body for each write, so that only the object lookup can refuse it.
BODIES = {
    ("post", "/v1/admins/{email}/role"): {"role": "admin"},
    ("post", "/v1/approvals/{id}/approve"): {"reason": "looks fine"},
    ("post", "/v1/approvals/{id}/deny"): {"reason": "no"},
    ("patch", "/v1/idps/{id}"): {"name": "renamed"},
    ("post", "/v1/issued/{jti}/revoke"): {"reason": "incident"},
    ("patch", "/v1/secrets/{name}"): {"description": "renamed"},
    ("post", "/v1/secrets/{name}/rotate"): {"secret": "a-new-secret-value"},
}


def path_parameters(path: str) -> list[tuple[str, str]]:
    """(collection, name) of each `{name}` in the template: the collection is the segment before it."""
    segments = path.strip("/").split("/")
    found = []
    for index, segment in enumerate(segments):
        if match := re.fullmatch(r"\{(\w+)\}", segment):
            found.append((segments[index - 1], match.group(1)))
    return found


def fill(path: str, values: dict[str, object]) -> str:
    return re.sub(r"\{(\w+)\}", lambda match: quote(str(values[match.group(1)]), safe="@"), path)


@dataclass
class Answer:
    status: int
    body: dict
    queries: int


def call(client: APIClient, method: str, path: str, body) -> Answer:
    with CaptureQueriesContext(connection) as queries:
        response = (
            getattr(client, method)(path, body, format="json") if body is not None else getattr(client, method)(path)
        )
    return Answer(response.status_code, response.json(), len(queries))


def comparable(answer: Answer, values: list) -> str:
    """The body without its request id, with the ids the request named replaced by a placeholder."""
    text = json.dumps({key: value for key, value in answer.body.items() if key != "request_id"}, sort_keys=True)
    for value in sorted((str(item) for item in values), key=len, reverse=True):
        text = text.replace(value, "<id>")
    return text


@pytest.fixture
def tenants(callers, django_capture_on_commit_callbacks, settings, tmp_path) -> tuple[Tenant, Tenant]:
    settings.KEYWARD_EXPORT_DIR = tmp_path / "exports"
    own = populate(callers.org, callers.owner, "acme", django_capture_on_commit_callbacks)
    other = populate(callers.other_org.org, callers.other_org, "globex", django_capture_on_commit_callbacks)
    return own, other


def check_signed_download(own: Tenant, other: Tenant, path: str) -> None:
    """The download route's authorisation is its signed link, not a session: our link on their export."""
    theirs = own.client.get(fill(path, {"export_id": other.export_id}), {"sig": own.download_sig})
    nowhere = own.client.get(fill(path, {"export_id": "exp_" + "0" * 32}), {"sig": own.download_sig})
    assert theirs.status_code == nowhere.status_code == 403, (theirs.content, nowhere.content)
    assert theirs.json()["error"] == "invalid_signature"
    strip = lambda body: {key: value for key, value in body.items() if key != "request_id"}  # noqa: E731
    assert strip(theirs.json()) == strip(nowhere.json())


# Routes authorised by something other than an org session, and how each is checked instead.
OTHER_AUTHORISATION = {("get", "/v1/audit/exports/{export_id}/download"): check_signed_download}


def test_another_orgs_objects_are_404s_like_ones_that_do_not_exist(tenants, subtests):
    own, other = tenants
    for method, path, operation in OPERATIONS:
        with subtests.test(route=f"{method.upper()} {path}"):
            probe_route(own, other, method, path, operation)


def probe_route(own: Tenant, other: Tenant, method: str, path: str, operation: dict) -> None:
    parameters = path_parameters(path)
    unknown = [parameter for parameter in parameters if parameter not in OBJECT_IDS]
    assert not unknown, f"{method.upper()} {path}: teach OBJECT_IDS what {unknown} name"
    if SESSION not in operation.get("security", []):
        check = OTHER_AUTHORISATION.get((method, path))
        assert check is not None, f"{method.upper()} {path} is not session-authenticated: teach OTHER_AUTHORISATION"
        check(own, other, path)
        return

    body = BODIES.get((method, path), {} if method in ("post", "put", "patch") else None)
    names = [name for _collection, name in parameters]
    choices = []
    for parameter in parameters:
        values_of, _ = OBJECT_IDS[parameter]
        choices.append([("own", values_of(own)[0])] + [("other", value) for value in values_of(other)])
    before = org_rows(other.org)
    for combination in itertools.product(*choices):
        if all(whose == "own" for whose, _ in combination):
            continue
        values = dict(zip(names, [value for _whose, value in combination], strict=True))
        nowhere = {
            name: (OBJECT_IDS[parameter][1] if whose == "other" else value)
            for (whose, value), name, parameter in zip(combination, names, parameters, strict=True)
        }
        probe = call(own.client, method, fill(path, values), body)
        control = call(own.client, method, fill(path, nowhere), body)

        where = f"{method.upper()} {fill(path, values)}"
        assert probe.status == 404, f"{where}: {probe.status} {probe.body}"
        leaked = [name for name in other.names if name in json.dumps(probe.body) and name not in str(values)]
        assert not leaked, f"{where} answered with the other org's data: {leaked}"
        assert comparable(probe, list(values.values())) == comparable(control, list(nowhere.values())), where
        assert probe.queries == control.queries, f"{where}: {probe.queries} queries, {control.queries} for nothing"
    assert org_rows(other.org) == before, f"{method.upper()} {path} changed the other org's rows"


def test_every_route_with_a_path_parameter_is_covered():
    """The generator found the routes this file knows are there; an empty list would test nothing."""
    found = {(method, path) for method, path, _ in OPERATIONS}
    assert {("get", "/v1/agents/{agent}"), ("delete", "/v1/admins/{email}"), ("patch", "/v1/idps/{id}")} <= found
    assert len(found) >= 20
