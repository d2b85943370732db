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
from dataclasses import dataclass

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from tests.security.rows import org_rows
from tests.security.tenants import (
    OBJECT_IDS,
    SESSION,
    Tenant,
    fill,
    has_path_parameter,
    path_parameters,
    schema_operations,
)

pytestmark = pytest.mark.django_db

OPERATIONS = [
    (method, path, operation) for method, path, operation in schema_operations() if has_path_parameter(operation)
]

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


def without_request_id(body: dict) -> dict:
    return {key: value for key, value in body.items() if key != "request_id"}


def comparable(answer: Answer, values: list) -> str:
    """The body without its request id, with the ids the request named replaced by a placeholder."""
    text = json.dumps(without_request_id(answer.body), sort_keys=True)
    for value in sorted((str(item) for item in values), key=len, reverse=True):
        text = text.replace(value, "<id>")
    return text


def check_signed_download(own: Tenant, other: Tenant, path: str) -> None:
    """The download route's authorisation is its signed link, not a session: our link on their export."""
    theirs = own.client.get(fill(path, {"export_id": other.export_id}), {"sig": own.download_sig})
    nowhere = own.client.get(fill(path, {"export_id": "exp_" + "0" * 32}), {"sig": own.download_sig})
    assert theirs.status_code == nowhere.status_code == 403, (theirs.content, nowhere.content)
    assert theirs.json()["error"] == "invalid_signature"
    assert without_request_id(theirs.json()) == without_request_id(nowhere.json())


# Routes authorised by something other than an org session, and how each is checked instead.
OTHER_AUTHORISATION = {("get", "/v1/audit/exports/{export_id}/download"): check_signed_download}


def test_another_orgs_objects_are_404s_like_ones_that_do_not_exist(tenants, subtests, still_window):
    own, other = tenants
    # A 404 is traced in full once per account and window, then only counted (keyward.audit.floods), the
    # same whether or not the object exists elsewhere: with the window held still, spend its full trace
    # up front, so that each probe and its control do the same work.
    assert own.client.get("/v1/agents/no-such-agent").status_code == 404
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
