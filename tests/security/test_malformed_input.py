"""Oversized and malformed input never gives a 500: the broker, and every write route of the schema.

Huge bodies, deep JSON nesting, invalid UTF-8, NUL bytes, unpaired surrogates, wrong content types,
huge headers and numbers out of range. The broker's answers are pinned exactly (status and code,
nothing issued); the admin routes are generated from the schema and must answer below 500 in the
one error shape. In the PostgreSQL pass the same requests reach PostgreSQL, which refuses NUL
characters and integers past 64 bits that SQLite stores.
"""

import json

import pytest
from rest_framework.test import APIClient

from broker.registry import create_introspection_key
from tests.factories import make_session_token
from tests.security.expect import ERROR_KEYS, Baseline, nothing_issued
from tests.security.tenants import OBJECT_IDS, fill, path_parameters, request_properties, schema_operations

pytestmark = pytest.mark.django_db

JSON = "application/json"
HUGE = 3 * 1024 * 1024  # past Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB)
VALID = {"provider": "stripe", "scope": "charges:read"}


def body(**fields) -> bytes:
    return json.dumps({**VALID, **fields}).encode()


def raw(text: str) -> bytes:
    return text.encode()


# name: (body, content type, extra headers, expected status, expected error code)
BROKER_CASES = {
    "body-over-the-brokers-limit": (body(pad="a" * 32 * 1024), JSON, {}, 400, "invalid_request"),
    "body-over-djangos-limit": (body(pad="a" * HUGE), JSON, {}, 400, "invalid_request"),
    "invalid-utf8-in-a-string": (
        b'{"provider": "stripe", "scope": "charges:\xff\xfe"}',
        JSON,
        {},
        400,
        "invalid_request",
    ),
    "invalid-utf8-only": (b"\xff\xfe\xfd\x00", JSON, {}, 400, "invalid_request"),
    "nul-in-provider": (body(provider="str\x00ipe"), JSON, {}, 400, "invalid_request"),
    "nul-in-scope": (body(scope="charges:read\x00"), JSON, {}, 400, "invalid_request"),
    "nul-after-the-json": (body() + b"\x00", JSON, {}, 400, "invalid_request"),
    "unpaired-surrogate": (raw('{"provider": "stripe", "scope": "\\ud800"}'), JSON, {}, 400, "invalid_request"),
    "surrogate-in-a-key": (
        raw('{"provider": "stripe", "scope": "charges:read", "\\udfff": 1}'),
        JSON,
        {},
        400,
        "invalid_request",
    ),
    "ttl-infinite": (
        raw('{"provider": "stripe", "scope": "charges:read", "ttl": 1e400}'),
        JSON,
        {},
        400,
        "invalid_request",
    ),
    "ttl-nan": (raw('{"provider": "stripe", "scope": "charges:read", "ttl": NaN}'), JSON, {}, 400, "invalid_request"),
    "ttl-5000-digits": (
        raw(f'{{"provider": "stripe", "scope": "charges:read", "ttl": {"9" * 5000}}}'),
        JSON,
        {},
        400,
        "invalid_request",
    ),
    "ttl-negative": (body(ttl=-(2**63)), JSON, {}, 400, "invalid_request"),
    "ttl-zero": (body(ttl=0), JSON, {}, 400, "invalid_request"),
    "ttl-boolean": (body(ttl=True), JSON, {}, 400, "invalid_request"),
    "ttl-float": (body(ttl=1.5), JSON, {}, 400, "invalid_request"),
    "scope-a-list": (body(scope=["charges:read"]), JSON, {}, 400, "invalid_request"),
    "scope-an-object": (body(scope={"charges:read": True}), JSON, {}, 400, "invalid_request"),
    "scope-too-many": (body(scope=" ".join(f"s{n}:read" for n in range(500))), JSON, {}, 400, "invalid_request"),
    "provider-a-number": (body(provider=2**70), JSON, {}, 400, "invalid_request"),
    "body-an-array": (b"[]", JSON, {}, 400, "invalid_request"),
    "body-a-string": (b'"stripe"', JSON, {}, 400, "invalid_request"),
    "body-null": (b"null", JSON, {}, 400, "invalid_request"),
    "body-empty": (b"", JSON, {}, 400, "invalid_request"),
    "form-encoded": (
        b"provider=stripe&scope=charges%3Aread",
        "application/x-www-form-urlencoded",
        {},
        400,
        "invalid_request",
    ),
    "multipart": (
        b"--x\r\nContent-Disposition: form-data; name=provider\r\n\r\nstripe\r\n--x--\r\n",
        "multipart/form-data; boundary=x",
        {},
        400,
        "invalid_request",
    ),
    "xml": (b"<credential><provider>stripe</provider></credential>", "application/xml", {}, 400, "invalid_request"),
    "agent-header-huge": (body(), JSON, {"HTTP_X_KEYWARD_AGENT": "a" * 100_000}, 400, "invalid_request"),
    "agent-header-nul": (body(), JSON, {"HTTP_X_KEYWARD_AGENT": "invoice-bot\x00"}, 400, "invalid_request"),
    "environment-header-huge": (body(), JSON, {"HTTP_X_KEYWARD_ENVIRONMENT": "p" * 100_000}, 400, "invalid_request"),
    "authorization-huge": (body(), JSON, {"HTTP_AUTHORIZATION": "Bearer " + "a" * 100_000}, 401, "invalid_user_token"),
    "authorization-empty-bearer": (body(), JSON, {"HTTP_AUTHORIZATION": "Bearer "}, 401, "invalid_user_token"),
    "authorization-latin1": (body(), JSON, {"HTTP_AUTHORIZATION": "Bearer " + "é" * 300}, 401, "invalid_user_token"),
    "delegation-header-huge": (
        body(),
        JSON,
        {"HTTP_AUTHORIZATION": None, "HTTP_X_KEYWARD_DELEGATION": "d" * 100_000},
        400,
        "invalid_request",
    ),
    "assertion-header-huge": (body(), JSON, {"HTTP_X_KEYWARD_AGENT_ASSERTION": "x" * 100_000}, 400, "invalid_request"),
    "idempotency-key-huge": (body(), JSON, {"HTTP_IDEMPOTENCY_KEY": "k" * 100_000}, 400, "invalid_request"),
    "idempotency-key-newline": (body(), JSON, {"HTTP_IDEMPOTENCY_KEY": "key\nInjected: 1"}, 400, "invalid_request"),
}
# JSON nested deeper than Python's parser recurses, inside the broker's 16 KiB.
DEEP_CASES = {
    "nested-lists": b"[" * 15_000,
    "nested-objects": b'{"a":' * 2_500 + b"1" + b"}" * 2_500,
    "nested-in-a-field": body()[:-1] + b', "x": ' + b"[" * 7_000 + b"]" * 7_000 + b"}",
}


@pytest.fixture
def broker(world):
    world.client = APIClient(raise_request_exception=False)  # a crash must show as a 500, not raise here
    return world


def ask(world, payload: bytes, content_type: str, headers: dict, address: str):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {world.user_token()}", "HTTP_X_KEYWARD_AGENT": "invoice-bot", **headers}
    headers = {name: value for name, value in headers.items() if value is not None}
    return world.client.post("/v1/credentials", payload, content_type=content_type, REMOTE_ADDR=address, **headers)


def assert_broker_refusal(response, before: Baseline, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.content[:300])
    answer = response.json()
    assert answer["error"] == code
    assert ERROR_KEYS <= set(answer) <= ERROR_KEYS | {"fields"}
    nothing_issued(before, answer)
    rows = [row for row in before.new_audit_rows() if row.request_id == answer["request_id"]]
    assert all((row.event_type, row.reason_code) == ("credential.denied", code) for row in rows), rows
    assert len(rows) <= 1


def test_malformed_requests_to_the_broker_get_their_documented_refusal(broker, subtests):
    broker.ask()  # warm the keys: every case below then fails on its input alone
    for number, (name, (payload, content_type, headers, status, code)) in enumerate(BROKER_CASES.items()):
        with subtests.test(case=name):
            before = Baseline.take()
            response = ask(broker, payload, content_type, headers, f"198.51.100.{number + 1}")
            if code is None:
                assert response.status_code == status, (response.status_code, response.content[:300])
            else:
                assert_broker_refusal(response, before, status, code)


@pytest.mark.parametrize("case", DEEP_CASES)
def test_json_nested_too_deeply_is_a_400_at_the_broker(broker, case):
    before = Baseline.take()
    response = ask(broker, DEEP_CASES[case], JSON, {}, "198.51.100.200")
    assert_broker_refusal(response, before, 400, "invalid_request")


def test_a_ttl_within_its_bound_is_clamped_and_one_beyond_is_a_400(broker):
    """The schema bounds a TTL at 999,999,999 seconds; anything up to it is clamped to the limits."""
    response = ask(broker, body(ttl=999_999_999), JSON, {}, "198.51.100.201")
    assert response.status_code == 200, response.content
    assert response.json()["expires_at"]
    before = Baseline.take()
    response = ask(broker, body(ttl=10**300), JSON, {}, "198.51.100.202")
    assert_broker_refusal(response, before, 400, "invalid_request")


# --- every write route of the schema ----------------------------------------------------------


def _every_property(properties: list[str], value_json: str) -> bytes:
    return ("{" + ", ".join(f"{json.dumps(name)}: {value_json}" for name in properties or ["x"]) + "}").encode()


def admin_bodies(properties: list[str]) -> dict[str, tuple[bytes, str]]:
    """Malformed bodies for a route taking `properties`: every property gets the same bad value."""
    return {
        "nested-lists": (b"[" * 100_000, JSON),
        "nested-objects": (b'{"a":' * 20_000 + b"1" + b"}" * 20_000, JSON),
        "invalid-utf8": (b'{"name": "\xff\xfe"}', JSON),
        "nul-everywhere": (_every_property(properties, json.dumps("a\x00b")), JSON),
        "nul-in-keys": (json.dumps({f"{name}\x00": 1 for name in properties or ["x"]}).encode(), JSON),
        "surrogate-everywhere": (_every_property(properties, '"\\ud800"'), JSON),
        "integer-past-64-bits": (_every_property(properties, str(2**64)), JSON),
        "integer-400-digits": (_every_property(properties, "9" * 400), JSON),
        "integer-5000-digits": (_every_property(properties, "9" * 5000), JSON),
        "negative-past-64-bits": (_every_property(properties, str(-(2**63) - 1)), JSON),
        "infinite-float": (_every_property(properties, "1e400"), JSON),
        "nan": (_every_property(properties, "NaN"), JSON),
        "lists-everywhere": (_every_property(properties, "[[[[1]]]]"), JSON),
        "objects-everywhere": (_every_property(properties, '{"$gt": ""}'), JSON),
        "long-strings": (_every_property(properties, json.dumps("x" * 100_000)), JSON),
        "a-list": (b"[1, 2, 3]", JSON),
        "a-string": (b'"x"', JSON),
        "null": (b"null", JSON),
        "text-plain": (b'{"name": "x"}', "text/plain"),
        "form": (b"name=x&role=owner", "application/x-www-form-urlencoded"),
        "multipart": (
            b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--x--\r\n",
            "multipart/form-data; boundary=x",
        ),
        "huge": (b'{"name": "' + b"a" * HUGE + b'"}', JSON),
    }


WRITES = [
    (method, path, operation) for method, path, operation in schema_operations() if method in ("post", "put", "patch")
]


def _client_for(own, path: str, operation: dict) -> APIClient:
    """A fresh session per route (a route may end it: logout, a role change); introspection its own key."""
    client = APIClient(raise_request_exception=False)
    security = operation.get("security") or [{}]
    if {"introspectionKey": []} in security:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {create_introspection_key(own.org, name='fuzz').key}")
    elif {"sessionToken": []} in security:
        owner = own.org.accounts.get(email=own.owner_email)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_session_token(owner)}")
    return client


def assert_no_crash(response, where: str) -> None:
    assert response.status_code < 500, f"{where}: {response.status_code} {response.content[:300]!r}"
    if response.status_code >= 400:
        assert set(response.json()) >= ERROR_KEYS, f"{where}: {response.content[:300]!r}"


def test_malformed_bodies_never_crash_a_write_route(tenants, subtests):
    own, _other = tenants
    assert len(WRITES) >= 20
    for method, path, operation in WRITES:
        values = {name: OBJECT_IDS[(collection, name)][0](own)[0] for collection, name in path_parameters(path)}
        url = fill(path, values)
        for name, (payload, content_type) in admin_bodies(sorted(request_properties(operation))).items():
            with subtests.test(route=f"{method.upper()} {path}", body=name):
                client = _client_for(own, path, operation)
                response = getattr(client, method)(url, payload, content_type=content_type)
                assert_no_crash(response, f"{method.upper()} {url} {name}")


def test_malformed_query_strings_and_headers_never_crash_a_read_route(tenants, subtests):
    own, _other = tenants
    reads = [(path, operation) for method, path, operation in schema_operations() if method == "get"]
    values_tried = ["a%00b", "%ff%fe", "%ed%a0%80", "9" * 400, "-1", "1e400", "NaN", "x" * 10_000]
    for path, operation in reads:
        values = {name: OBJECT_IDS[(collection, name)][0](own)[0] for collection, name in path_parameters(path)}
        url = fill(path, values)
        names = [parameter["name"] for parameter in operation.get("parameters", []) if parameter["in"] == "query"]
        for parameter in names or ["unknown"]:
            for value in values_tried:
                with subtests.test(route=f"GET {path}", parameter=parameter, value=value[:12]):
                    response = _client_for(own, path, operation).get(url, QUERY_STRING=f"{parameter}={value}")
                    assert_no_crash(response, f"GET {url}?{parameter}={value[:20]}")
        with subtests.test(route=f"GET {path}", header="huge"):
            client = _client_for(own, path, operation)
            response = client.get(url, HTTP_X_REQUEST_ID="r" * 100_000, HTTP_X_FORWARDED_FOR="not, an, ip, " * 1000)
            assert_no_crash(response, f"GET {url} with huge headers")
            assert len(response["X-Request-Id"]) <= 128


def test_a_huge_or_garbled_session_token_is_a_401(tenants):
    for token in ("kw_sess_" + "a" * 100_000, "kw_sess_\x00", "é" * 500, ""):
        response = APIClient(raise_request_exception=False).get("/v1/agents", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 401, (token[:20], response.content[:200])
        assert set(response.json()) >= ERROR_KEYS
