"""Two orgs with one of every object an admin route can address, and the live schema's routes.

Shared by the tenancy, malformed-input and secrets tests: the routes come from the OpenAPI schema,
and `OBJECT_IDS` says what each path parameter names, so a route with a parameter nobody taught
these tests about fails instead of going untested.
"""

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from broker.registry import create_introspection_key
from keyward.accounts.models import Role
from keyward.idp import services as idp_services
from keyward.policies.models import Effect, Policy
from keyward.tenancy.models import Org
from tests.broker.conftest import World, allow, make_agent, make_provider
from tests.factories import make_account, make_session_token

METHODS = ("get", "post", "put", "patch", "delete")
SESSION = {"sessionToken": []}


@functools.cache
def live_schema() -> dict:
    """The OpenAPI schema as GET /v1/schema serves it, generated in-process."""
    return SchemaGenerator().get_schema(request=None, public=True)


def schema_operations() -> list[tuple[str, str, dict]]:
    """(method, path template, operation) for every operation of the live schema."""
    return [
        (method, path, item[method])
        for path, item in live_schema()["paths"].items()
        for method in METHODS
        if method in item
    ]


def has_path_parameter(operation: dict) -> bool:
    return any(parameter["in"] == "path" for parameter in operation.get("parameters", []))


def request_properties(operation: dict) -> set[str]:
    """Every property name anywhere in an operation's request body schemas."""
    found: set[str] = set()
    for media in operation.get("requestBody", {}).get("content", {}).values():
        found |= _walk_properties(media.get("schema", {}), set())
    return found


def _walk_properties(node: dict, seen: set[str]) -> set[str]:
    """Property names in a schema node, through $ref, allOf/oneOf/anyOf and items."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return set()
        return _walk_properties(live_schema()["components"]["schemas"][name], seen | {name})
    found = set()
    for name, child in node.get("properties", {}).items():
        found.add(name)
        found |= _walk_properties(child, seen)
    for key in ("allOf", "oneOf", "anyOf"):
        for child in node.get(key, []):
            found |= _walk_properties(child, seen)
    if isinstance(node.get("items"), dict):
        found |= _walk_properties(node["items"], seen)
    return found


@dataclass
class Tenant:
    """One org with one of every kind of object an admin route can address, and its owner's client."""

    org: Org
    client: APIClient
    owner_email: str
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
        owner_email=owner.email,
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
