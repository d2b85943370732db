"""The `aws_sts` minter against a real moto server on 127.0.0.1, through boto3 and POST /v1/credentials.

moto runs with IAM authentication on (an IAM user with an access key, allowed to assume the role by
its policy and by the role's trust policy), so a wrong key is refused the way AWS refuses it.
Answers moto cannot give (5xx, throttling, malformed XML, a hung server) come from small local
HTTP servers. Every connection keyward makes is held to loopback by `loopback_only`.
"""

import hashlib
import json
import logging
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qsl

import pytest
import requests
from botocore.config import Config
from django.utils import timezone
from moto.server import ThreadedMotoServer
from moto.sts.models import sts_backends
from rest_framework.test import APIClient

from broker.minters import aws_sts, resilience
from broker.models import IssuedCredential
from keyward.audit.models import AuditEvent
from keyward.providers.models import Provider
from keyward.providers.services import create_provider, rotate_secret, update_provider
from tests import local_http
from tests.broker.conftest import World, allow, last_audit, make_agent, make_provider
from tests.factories import repoint_provider

pytestmark = pytest.mark.django_db

fake_dns = local_http.fake_dns
local_server = local_http.local_server
loopback_only = local_http.loopback_only

ACCOUNT = "123456789012"
REGION = "eu-west-1"
READ = [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}]
LIST = {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}
WRITE_LOGS = [LIST, {"Effect": "Allow", "Action": "logs:PutLogEvents", "Resource": "arn:aws:logs:*:*:*"}]
SCOPE_POLICIES = {"s3:read": READ, "logs:write": WRITE_LOGS}
ASSUMED_ARN = re.compile(rf"arn:aws:sts::{ACCOUNT}:assumed-role/(?P<role>[^/]+)/(?P<session>[\w+=,.@-]{{2,64}})")


@dataclass
class Moto:
    url: str
    access_key_id: str
    secret_access_key: str
    role_arn: str
    external_id_role_arn: str  # its trust policy also demands sts:ExternalId

    def client(self, service: str, **credentials):
        """A boto3 client for moto, as a user of the minted credential would make one."""
        credentials = credentials or {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
        }
        return moto_client(self.url, service, **credentials)

    def assumed_roles(self) -> list:
        """What moto's STS backend recorded for every AssumeRole it served."""
        return list(sts_backends[ACCOUNT]["aws"].assumed_roles)

    @property
    def keys(self) -> dict[str, str]:
        return {"access_key_id": self.access_key_id, "secret_access_key": self.secret_access_key}


def moto_client(url: str, service: str, **credentials):
    """A test's own boto3 client: blind to AWS_* variables, ~/.aws and proxy variables, so it reaches moto only."""
    session = aws_sts._hermetic_session()
    no_proxy = {"http": None, "https": None}
    config = Config(retries={"total_max_attempts": 1}, proxies=no_proxy)
    return session.client(service, endpoint_url=url, region_name=REGION, config=config, **credentials)


def _bootstrap_iam(url: str) -> Moto:
    """An IAM user keyward calls STS as, and two roles it may assume (the second needs an external id)."""
    iam = moto_client(url, "iam", aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
    user = iam.create_user(UserName="keyward")["User"]
    roles = {}
    for name, condition in (("keyward-agents", None), ("keyward-partner", {"sts:ExternalId": "partner-4711"})):
        statement = {
            "Effect": "Allow",
            "Principal": {"AWS": user["Arn"]},
            "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"],
        }
        if condition:
            statement["Condition"] = {"StringEquals": condition}
        trust = {"Version": "2012-10-17", "Statement": [statement]}
        roles[name] = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    may_assume = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"], "Resource": list(roles.values())}
        ],
    }
    iam.put_user_policy(UserName="keyward", PolicyName="assume", PolicyDocument=json.dumps(may_assume))
    key = iam.create_access_key(UserName="keyward")["AccessKey"]
    return Moto(url, key["AccessKeyId"], key["SecretAccessKey"], roles["keyward-agents"], roles["keyward-partner"])


def moto_api(url: str, action: str, data: bytes = b"") -> requests.Response:
    """moto's own control API, called directly (never through a proxy from the environment)."""
    with requests.Session() as session:
        session.trust_env = False
        return session.post(f"{url}/moto-api/{action}", data=data, timeout=5)


@pytest.fixture(scope="module")
def moto():
    """A real moto server on 127.0.0.1 (a free port), with IAM authentication enforced once set up."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    werkzeug = logging.getLogger("werkzeug")
    werkzeug_level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)  # one line per request to moto is noise
    try:
        world = _bootstrap_iam(url)
        moto_api(url, "reset-auth", b"0").raise_for_status()  # from now on, every request is authenticated
        yield world
    finally:
        moto_api(url, "reset-auth", b"inf")
        moto_api(url, "reset")
        server.stop()
        werkzeug.setLevel(werkzeug_level)


@pytest.fixture(autouse=True)
def _loopback(loopback_only):
    """Every connection keyward makes in these tests is held to loopback (breakers are reset by conftest)."""


@pytest.fixture
def sent():
    """The parameters of every AssumeRole keyward sends, read off the signed request by a botocore event hook."""
    seen: list[dict[str, str]] = []

    def observe(request, **_):
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        seen.append(dict(parse_qsl(body)))

    events = aws_sts._hermetic_session().events
    events.register("before-send.sts.AssumeRole", observe, unique_id="test-observer")
    yield seen
    events.unregister("before-send.sts.AssumeRole", unique_id="test-observer")


@dataclass
class AwsWorld:
    world: World
    provider: Provider
    admin: APIClient
    moto: Moto

    def ask(self, scope: str = "s3:read", ttl: str = "30m", **kwargs):
        return self.world.ask({"provider": "aws", "scope": scope, "ttl": ttl}, **kwargs)


def aws_config(moto: Moto, **overrides) -> dict:
    return {
        "role_arn": moto.role_arn,
        "region": REGION,
        "endpoint_url": moto.url,
        "scope_policies": SCOPE_POLICIES,
        **overrides,
    }


@pytest.fixture
def aws(callers, moto) -> AwsWorld:
    """The callers' org, with an agent granted the `aws` provider and a policy allowing it."""
    org = callers.org
    grants = [{"provider": "aws", "scopes": ["s3:*", "logs:*", "ec2:*"], "environments": ["prod"]}]
    world = World(org=org, agent=make_agent(org, grants=grants), provider=make_provider(org), client=APIClient())
    allow(org, provider="aws")
    provider = create_provider(
        org=org,
        name="aws",
        kind="aws_sts",
        config=aws_config(moto),
        scopes=["s3:read", "logs:write", "ec2:admin"],
        secret=moto.keys,
    )
    return AwsWorld(world=world, provider=provider, admin=callers.client("admin"), moto=moto)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def assert_mint_failed(
    response, upstream_error: str, upstream_status: int | None = None, *, records: int = 0
) -> AuditEvent:
    """A 502 `native_mint_failed`, nothing recorded (`records` exist from setup), and its audit row."""
    assert response.status_code == 502, response.content
    body = response.json()
    assert body["error"] == "native_mint_failed"
    assert set(body) == {"error", "message", "request_id"}
    assert IssuedCredential.objects.count() == records
    event = last_audit()
    assert (event.event_type, event.reason_code) == ("credential.denied", "native_mint_failed")
    assert event.detail["upstream_error"] == upstream_error
    assert event.detail["upstream_status"] == upstream_status
    return event


# --- issuing ------------------------------------------------------------------------------------


def test_issues_sts_credentials_that_work_against_moto(aws, sent):
    roles_before = len(aws.moto.assumed_roles())
    response = aws.ask("s3:read", "30m")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["token_type"] == "aws_sts"
    assert "ttl_clamped_up_to" not in body
    credential = body["credential"]
    assert set(credential) == {"access_key_id", "secret_access_key", "session_token", "expiration"}

    identity = aws.moto.client(
        "sts",
        aws_access_key_id=credential["access_key_id"],
        aws_secret_access_key=credential["secret_access_key"],
        aws_session_token=credential["session_token"],
    ).get_caller_identity()
    match = ASSUMED_ARN.fullmatch(identity["Arn"])
    assert match is not None, identity["Arn"]
    assert (match["role"], match["session"]) == ("keyward-agents", "invoice-bot")

    served = aws.moto.assumed_roles()
    assert len(served) == roles_before + 1
    assumed = served[-1]
    assert (assumed.role_arn, assumed.session_name) == (aws.moto.role_arn, "invoice-bot")
    assert json.loads(assumed.policy) == {"Version": "2012-10-17", "Statement": READ}
    assert assumed.access_key_id == credential["access_key_id"]
    assert sent[-1]["SourceIdentity"] == "alice@example.com"
    assert sent[-1]["RoleSessionName"] == "invoice-bot"
    assert sent[-1]["DurationSeconds"] == "1800"
    assert "ExternalId" not in sent[-1]

    record = IssuedCredential.objects.get(jti=body["credential_id"])
    assert record.token_type == "aws_sts"
    assert record.revocable_upstream is False
    assert record.expires_at == parse_time(body["expires_at"])
    assert record.expires_at <= parse_time(credential["expiration"])  # the TTL caps keyward's record
    assert record.native["assumed_role_arn"] == identity["Arn"]
    assert record.native["access_key_id"] == credential["access_key_id"]
    assert record.native["duration_seconds"] == 1800
    assert record.native["upstream_revocation"].startswith("unsupported:")
    event = last_audit()
    assert (event.event_type, event.credential_jti) == ("credential.issued", body["credential_id"])
    assert event.detail["credential_type"] == "aws_sts"


def test_a_ttl_under_900_seconds_is_clamped_up_and_said(aws, sent):
    response = aws.ask("s3:read", "5m")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["ttl_clamped_up_to"] == 900
    assert sent[-1]["DurationSeconds"] == "900"
    assumed = aws.moto.assumed_roles()[-1]
    # The record and the answer carry AWS's real expiry, not the 5 minutes asked for.
    aws_expiry = parse_time(body["credential"]["expiration"])
    assert aws_expiry == assumed.expiration.replace(tzinfo=aws_expiry.tzinfo)
    assert parse_time(body["expires_at"]) == aws_expiry
    record = IssuedCredential.objects.get(jti=body["credential_id"])
    assert record.expires_at == aws_expiry
    assert (record.expires_at - record.issued_at).total_seconds() >= 900
    event = last_audit("credential.issued")
    assert (event.detail["ttl_seconds"], event.detail["ttl_clamped_up_to"]) == (300, 900)


def test_the_session_policy_is_the_union_of_the_requested_scopes(aws, sent):
    response = aws.ask("s3:read logs:write")

    assert response.status_code == 200, response.content
    statements = json.loads(aws.moto.assumed_roles()[-1].policy)["Statement"]
    assert statements == [*READ, *WRITE_LOGS]
    assert json.loads(sent[-1]["Policy"])["Statement"] == statements


def test_a_statement_two_scopes_share_is_sent_once(aws, sent):
    policies = {"s3:read": [*READ, LIST], "logs:write": WRITE_LOGS}  # LIST is in both
    update_provider(aws.provider, config=aws_config(aws.moto, scope_policies=policies))
    assert aws.ask("s3:read logs:write").status_code == 200
    assert json.loads(sent[-1]["Policy"])["Statement"] == [*READ, *WRITE_LOGS]


def test_role_session_name_and_source_identity_are_sanitised(aws, sent):
    long_agent = "research.assistant-" + "x" * 60  # a valid agent name, too long for AWS
    make_agent(aws.world.org, long_agent, grants=[{"provider": "aws", "scopes": ["s3:*"], "environments": ["prod"]}])
    end_user = "Ålice Smith <alice@example.com>"
    response = aws.world.ask(
        {"provider": "aws", "scope": "s3:read", "ttl": "20m"}, agent=long_agent, token=aws.world.user_token(end_user)
    )

    assert response.status_code == 200, response.content
    user_digest = hashlib.sha256(end_user.encode()).hexdigest()[:12]
    agent_digest = hashlib.sha256(long_agent.encode()).hexdigest()[:12]
    assert sent[-1]["SourceIdentity"] == f"-lice-Smith--alice@example.com-.{user_digest}"
    assert sent[-1]["RoleSessionName"] == f"{long_agent[:51]}.{agent_digest}"
    assert aws.moto.assumed_roles()[-1].session_name == sent[-1]["RoleSessionName"]
    record = IssuedCredential.objects.get(jti=response.json()["credential_id"])
    assert (record.end_user, record.agent.name) == (end_user, long_agent)  # keyward keeps the full names
    assert record.native["source_identity"] == sent[-1]["SourceIdentity"]


def test_the_external_id_is_sent_and_the_trust_policy_checks_it(aws, sent):
    config = aws_config(aws.moto, role_arn=aws.moto.external_id_role_arn, external_id="partner-4711")
    update_provider(aws.provider, config=config)
    assert aws.ask().status_code == 200
    assert sent[-1]["ExternalId"] == "partner-4711"
    assert aws.moto.assumed_roles()[-1].external_id == "partner-4711"

    update_provider(aws.provider, config={**config, "external_id": "someone-else"})
    assert_mint_failed(aws.ask(), "AccessDenied", 403, records=1)


def test_a_delegated_request_that_would_outlive_its_parent_is_refused_before_calling_aws(aws, sent):
    parent = aws.ask("s3:read", "30m").json()
    helper = "helper-bot"
    make_agent(aws.world.org, helper, grants=[{"provider": "aws", "scopes": ["s3:*"], "environments": ["prod"]}])

    def delegate():
        return aws.world.ask(
            {"provider": "aws", "scope": "s3:read", "ttl": "20m"},
            agent=helper,
            token=None,
            delegation=parent["delegation"]["token"],
        )

    child = delegate()
    assert child.status_code == 200, child.content
    assert sent[-1]["RoleSessionName"] == helper
    assert parse_time(child.json()["expires_at"]) <= parse_time(parent["expires_at"])

    # The parent has 10 minutes left: a child may live at most that long, and AWS cannot go under 15.
    IssuedCredential.objects.filter(jti=parent["credential_id"]).update(
        expires_at=timezone.now() + timedelta(minutes=10)
    )
    calls = len(sent)
    assert_mint_failed(delegate(), "ttl_below_provider_minimum", records=2)
    assert len(sent) == calls


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("invoice-bot", "invoice-bot"),
        ("alice@example.com", "alice@example.com"),
        ("a" * 64, "a" * 64),
    ],
)
def test_a_name_aws_accepts_is_sent_as_it_is(value, expected):
    assert aws_sts.aws_name(value) == expected


@pytest.mark.parametrize(
    "value",
    ["a", "", "a" * 65, "alice smith", "aws:admin", "Ålice", "名前", "x\ud800y", "tab\tname", "a/b:c"],
)
def test_any_other_name_is_rewritten_deterministically_within_aws_limits(value):
    name = aws_sts.aws_name(value)
    assert 2 <= len(name) <= 64
    assert all(char.isascii() and (char.isalnum() or char in "_+=,.@-") for char in name)
    assert not name.startswith("aws:")
    assert aws_sts.aws_name(value) == name


def test_names_that_clean_up_alike_stay_distinct():
    assert aws_sts.aws_name("alice smith") != aws_sts.aws_name("alice-smith") != aws_sts.aws_name("alice/smith")
    assert aws_sts.aws_name("alice smith") != aws_sts.aws_name("alice/smith")
    long_prefix = "x" * 64
    assert aws_sts.aws_name(long_prefix + "1") != aws_sts.aws_name(long_prefix + "2")


# --- failures: each a 502 with nothing recorded but the audit row --------------------------------


@pytest.mark.parametrize(
    ("keys", "code"),
    [
        ("wrong_secret", "SignatureDoesNotMatch"),
        ("unknown_key", "InvalidClientTokenId"),
    ],
)
def test_a_wrong_access_key_is_refused_by_aws(aws, connection_attempts, keys, code):
    secrets = {
        "wrong_secret": {**aws.moto.keys, "secret_access_key": "A" * 40},
        "unknown_key": {"access_key_id": "AKIA" + "Z" * 16, "secret_access_key": "A" * 40},
    }[keys]
    rotate_secret(aws.provider, secret=secrets)
    event = assert_mint_failed(aws.ask(), code, 403)
    assert len(connection_attempts) == 1  # a refusal is not retried
    assert "A" * 40 not in json.dumps(event.detail)


def test_a_dead_sts_endpoint_is_retried_a_bounded_number_of_times(aws, connection_attempts, closed_port):
    repoint_provider(aws.provider, aws_config(aws.moto, endpoint_url=f"http://127.0.0.1:{closed_port}"))

    assert_mint_failed(aws.ask(), "unreachable")
    assert connection_attempts == [("127.0.0.1", closed_port)] * resilience.MAX_ATTEMPTS


def test_the_breaker_opens_on_a_dead_endpoint_and_recovers(aws, connection_attempts, closed_port, monkeypatch):
    repoint_provider(aws.provider, aws_config(aws.moto, endpoint_url=f"http://127.0.0.1:{closed_port}"))
    for _ in range(resilience.FAILURE_THRESHOLD):
        assert_mint_failed(aws.ask(), "unreachable")
    attempts = len(connection_attempts)

    assert_mint_failed(aws.ask(), "circuit_open")
    assert len(connection_attempts) == attempts  # failed fast, without connecting

    repoint_provider(aws.provider, aws_config(aws.moto))
    monkeypatch.setattr(resilience, "OPEN_SECONDS", 0.0)  # the open period is over: one trial call
    assert aws.ask().status_code == 200
    assert aws.ask().status_code == 200  # closed again
    assert IssuedCredential.objects.count() == 2


def test_an_unmapped_scope_is_refused_before_calling_aws(aws, connection_attempts, sent):
    roles_before = len(aws.moto.assumed_roles())
    assert_mint_failed(aws.ask("s3:read ec2:admin"), "scope_not_mapped")
    assert connection_attempts == []
    assert sent == []
    assert len(aws.moto.assumed_roles()) == roles_before


def test_an_endpoint_that_resolves_to_the_metadata_address_at_connect_time_is_never_called(
    aws, connection_attempts, fake_dns
):
    fake_dns["sts.rebind.test"] = [["169.254.169.254"]]
    port = aws.moto.url.rsplit(":", 1)[1]
    repoint_provider(aws.provider, aws_config(aws.moto, endpoint_url=f"http://sts.rebind.test:{port}"))

    assert_mint_failed(aws.ask(), "url_destination_not_allowed")
    assert connection_attempts == []


def test_a_config_edited_by_hand_is_refused_before_calling_aws(aws, connection_attempts):
    Provider.objects.filter(pk=aws.provider.pk).update(config={"role_arn": aws.moto.role_arn})
    assert_mint_failed(aws.ask(), "provider_misconfigured")
    assert connection_attempts == []


def sts_error(code: str, message: str = "Rate exceeded") -> bytes:
    return (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ErrorResponse>"
    ).encode()


def sts_answer(*, expiration: str, session_token: str | None = "FwoGZXIvYXdzEJr//////////wEaDM") -> bytes:
    token = f"<SessionToken>{session_token}</SessionToken>" if session_token else ""
    return (
        '<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>'
        "<Credentials><AccessKeyId>ASIAEXAMPLEEXAMPLE12</AccessKeyId>"
        f"<SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>{token}"
        f"<Expiration>{expiration}</Expiration></Credentials>"
        f"<AssumedRoleUser><Arn>arn:aws:sts::{ACCOUNT}:assumed-role/keyward-agents/invoice-bot</Arn>"
        "<AssumedRoleId>AROA3XFRBF535PLBIFPI4:invoice-bot</AssumedRoleId></AssumedRoleUser>"
        "</AssumeRoleResult></AssumeRoleResponse>"
    ).encode()


@pytest.mark.parametrize(
    ("status", "body", "upstream_status", "upstream_error", "attempts"),
    [
        (503, sts_error("ServiceUnavailable"), 503, "ServiceUnavailable", resilience.MAX_ATTEMPTS),
        (500, b"<html>oops</html>", 500, "http_500", resilience.MAX_ATTEMPTS),
        (400, sts_error("Throttling"), 400, "Throttling", resilience.MAX_ATTEMPTS),
        (400, sts_error("MalformedPolicyDocument"), 400, "MalformedPolicyDocument", 1),
        (403, sts_error("AccessDenied", "echo: wJalrXUtnFEMI-leaked"), 403, "AccessDenied", 1),
        (400, sts_error("Not A Code &lt;b&gt;"), 400, "http_400", 1),
        (200, b"this is not XML", None, "bad_response", 1),
        (200, sts_answer(expiration="2999-01-01T00:00:00Z"), 200, "bad_response", 1),
        (200, sts_answer(expiration="2000-01-01T00:00:00Z"), 200, "bad_response", 1),
        (200, sts_answer(expiration="2999-01-01T00:00:00Z", session_token=None), 200, "bad_response", 1),
    ],
)
def test_provider_failures_map_to_502_with_status_and_code_only(
    aws, local_server, status, body, upstream_status, upstream_error, attempts
):
    fake_sts = local_server()
    fake_sts.respond("/", body=body, status=status, headers={"Content-Type": "text/xml"})
    repoint_provider(aws.provider, aws_config(aws.moto, endpoint_url=fake_sts.url("/")))

    response = aws.ask()
    event = assert_mint_failed(response, upstream_error, upstream_status)
    assert fake_sts.count("/") == attempts
    assert "wJalrXUtnFEMI" not in response.content.decode() + json.dumps(event.detail) + event.reason_code


def test_a_hung_sts_endpoint_times_out_and_is_retried(aws, local_server, monkeypatch):
    monkeypatch.setattr(aws_sts, "READ_TIMEOUT", 0.2)
    release = threading.Event()
    hung = local_server()
    hung.respond("/", body=sts_error("Throttling"), status=400, hold=release)
    repoint_provider(aws.provider, aws_config(aws.moto, endpoint_url=hung.url("/")))
    try:
        assert_mint_failed(aws.ask(), "timeout")
    finally:
        release.set()
    assert hung.count("/") == resilience.MAX_ATTEMPTS


# --- secrets and the record ----------------------------------------------------------------------


def test_no_secret_in_audit_rows_the_registry_or_logs(aws, caplog):
    caplog.set_level(logging.DEBUG)
    issued = aws.ask().json()
    clamped = aws.ask("s3:read", "1m").json()
    failed = aws.ask("ec2:admin")
    assert failed.status_code == 502

    secrets = [aws.moto.secret_access_key]
    for body in (issued, clamped):
        secrets += [body["credential"]["secret_access_key"], body["credential"]["session_token"]]
    shown = [aws.admin.get(f"/v1/issued/{body['credential_id']}") for body in (issued, clamped)]
    audit = json.dumps(list(AuditEvent.objects.values()), default=str)
    keyward_logs = "\n".join(
        record.getMessage() for record in caplog.records if not record.name.startswith(("moto", "werkzeug"))
    )
    for secret in secrets:
        assert secret not in audit
        assert secret not in keyward_logs
        assert all(secret not in answer.content.decode() for answer in shown)
        assert secret not in failed.content.decode()

    # botocore logs whole answers at DEBUG; the minter keeps its logger above that.
    assert not [
        record for record in caplog.records if record.name.startswith("botocore") and record.levelno < logging.INFO
    ]
    assert [answer.status_code for answer in shown] == [200, 200]
    record = shown[0].json()
    assert record["revocable_upstream"] is False
    assert record["native"]["upstream_revocation"].startswith("unsupported: AWS STS session credentials cannot")
    assert record["native"]["access_key_id"] == issued["credential"]["access_key_id"]
    assert parse_time(shown[1].json()["expires_at"]) == parse_time(clamped["credential"]["expiration"])


def test_revoking_in_keyward_records_it_without_any_call_to_aws(aws, connection_attempts):
    issued = aws.ask().json()
    calls = len(connection_attempts)

    revoked = aws.admin.post(f"/v1/issued/{issued['credential_id']}/revoke", {"reason": "leaked"}, format="json")

    assert revoked.status_code == 200, revoked.content
    assert revoked.json()["revoked"] == [issued["credential_id"]]
    assert len(connection_attempts) == calls  # STS has nothing to call
    shown = aws.admin.get(f"/v1/issued/{issued['credential_id']}").json()
    assert (shown["status"], shown["revocable_upstream"]) == ("revoked", False)
    assert "cannot be revoked" in shown["native"]["upstream_revocation"]
    assert not AuditEvent.objects.filter(event_type__startswith="credential.upstream").exists()


def test_minting_again_and_again_reuses_one_session(aws):
    """boto3 grows a session's loader paths and handlers each time it wraps it: that must happen once."""
    assert aws.ask().status_code == 200
    loader = aws_sts._hermetic_session()._session.get_component("data_loader")
    paths = len(loader.search_paths)
    for _ in range(3):
        assert aws.ask().status_code == 200
    assert len(loader.search_paths) == paths


def test_botocore_reads_no_environment_or_aws_files(aws, monkeypatch, tmp_path):
    """AWS_* variables, a profile, ~/.aws files and proxies must neither redirect nor re-key the call."""
    (tmp_path / ".aws").mkdir()
    for name in ("config", "credentials"):
        (tmp_path / ".aws" / name).write_text("this is [not an ini file\n")
    poisoned = {
        "HOME": str(tmp_path),
        "AWS_PROFILE": "ghost",
        "AWS_DEFAULT_PROFILE": "ghost",
        "AWS_CONFIG_FILE": str(tmp_path / ".aws" / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / ".aws" / "credentials"),
        "AWS_ACCESS_KEY_ID": "AKIA" + "E" * 16,
        "AWS_SECRET_ACCESS_KEY": "E" * 40,
        "AWS_SESSION_TOKEN": "env-token",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ENDPOINT_URL_STS": "http://127.0.0.1:9",
        "AWS_DEFAULTS_MODE": "auto",
        "AWS_MAX_ATTEMPTS": "7",
        "AWS_CA_BUNDLE": str(tmp_path / "missing.pem"),
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
    }
    for name, value in poisoned.items():
        monkeypatch.setenv(name, value)
    aws_sts._hermetic_session.cache_clear()
    try:
        response = aws.ask()
    finally:
        aws_sts._hermetic_session.cache_clear()

    # moto checks the signature against the IAM user's key: only the provider's secret can have signed it.
    assert response.status_code == 200, response.content
    assert aws.moto.assumed_roles()[-1].access_key_id == response.json()["credential"]["access_key_id"]
