"""What an `aws_sts` provider accepts as config and as a secret, checked when an admin saves it."""

import json

import pytest

from keyward.core.exceptions import InvalidRequest
from keyward.providers import kinds

ROLE = "arn:aws:iam::123456789012:role/agents"
READ = {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "arn:aws:s3:::reports/*"}
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
KEYS = {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": SECRET_KEY}


def config(**overrides) -> dict:
    return {"role_arn": ROLE, "region": "eu-west-1", "scope_policies": {"s3:read": [READ]}, **overrides}


def refusal(value: dict, code: str = "invalid_request") -> InvalidRequest:
    with pytest.raises(InvalidRequest) as refused:
        kinds.validate_config("aws_sts", value, name="aws")
    assert refused.value.code == code
    assert "config" in refused.value.fields
    return refused.value


def test_a_full_config_is_stored_with_policy_documents_as_statement_lists():
    document = {"Version": "2012-10-17", "Statement": READ}
    conditional = {
        "Effect": "Deny",
        "NotAction": "s3:*",
        "NotResource": ["arn:aws:s3:::reports", "arn:aws:s3:::reports/*"],
        "Condition": {
            "ForAnyValue:StringLike": {"aws:PrincipalTag/team": ["data-*"]},
            "Bool": {"aws:SecureTransport": True},
        },
        "Sid": "OnlyReports",
    }
    stored = kinds.validate_config(
        "aws_sts",
        config(
            role_arn="arn:aws-us-gov:iam::123456789012:role/division/team/agents",
            region="us-gov-west-1",
            endpoint_url="https://sts.us-gov-west-1.amazonaws.com",
            external_id="partner:4711/keyward",
            scope_policies={"s3:read": document, "s3:guarded": [READ, conditional]},
        ),
        name="aws",
    )
    assert stored["scope_policies"] == {"s3:read": [READ], "s3:guarded": [READ, conditional]}
    assert stored["external_id"] == "partner:4711/keyward"
    assert stored["endpoint_url"] == "https://sts.us-gov-west-1.amazonaws.com"


@pytest.mark.parametrize(
    "value",
    [
        {"region": "eu-west-1", "scope_policies": {"s3:read": [READ]}},
        config(role_arn="arn:aws:iam::123456789012:user/agents"),
        config(role_arn="arn:aws:iam::12345678901:role/agents"),
        config(role_arn="arn:aws:iam::123456789012:role/agents with spaces"),
        config(role_arn="arn:aws:sts::123456789012:assumed-role/agents/x"),
        config(role_arn=ROLE + "\n"),
        config(role_arn=7),
        config(region="EU-WEST-1"),
        config(region="eu-west"),
        config(region="eu-west-1; rm"),
        config(role="admin"),
        config(duration=900),
        config(scope_policies=None),
        config(scope_policies={}),
        config(scope_policies=[READ]),
        config(scope_policies={"s3:*": [READ]}),
        config(scope_policies={"bad scope": [READ]}),
        config(scope_policies={"s3:read": []}),
        config(scope_policies={"s3:read": [READ] * 21}),
        config(scope_policies={"s3:read": "s3:GetObject"}),
        config(scope_policies={"s3:read": {"Version": "2008-10-17", "Statement": [READ]}}),
        config(scope_policies={"s3:read": {"Version": "2012-10-17", "Statement": [READ], "Id": "x"}}),
        config(scope_policies={"s3:read": [{**READ, "Principal": "*"}]}),
        config(scope_policies={"s3:read": [{**READ, "Effect": "allow"}]}),
        config(scope_policies={"s3:read": [{"Effect": "Allow", "Resource": "*"}]}),
        config(scope_policies={"s3:read": [{**READ, "NotAction": "s3:PutObject"}]}),
        config(scope_policies={"s3:read": [{"Effect": "Allow", "Action": "s3:GetObject"}]}),
        config(scope_policies={"s3:read": [{**READ, "Action": "s3 GetObject"}]}),
        config(scope_policies={"s3:read": [{**READ, "Action": []}]}),
        config(scope_policies={"s3:read": [{**READ, "Resource": "reports-bucket"}]}),
        config(scope_policies={"s3:read": [{**READ, "Resource": "arn:aws:s3:::a\u0000b"}]}),
        config(scope_policies={"s3:read": [{**READ, "Sid": "has spaces"}]}),
        config(scope_policies={"s3:read": [{**READ, "Condition": "aws:SecureTransport"}]}),
        config(scope_policies={"s3:read": [{**READ, "Condition": {"Bool": {"aws:SecureTransport": None}}}]}),
        config(scope_policies={"s3:read": [{**READ, "Condition": {"StringEquals": {"aws:x": "a\nb"}}}]}),
        config(scope_policies={"s3:read": [{**READ, "Condition": {"Not An Operator": {"aws:x": "a"}}}]}),
        config(scope_policies={"s3:read": [{**READ, "Resource": [f"arn:aws:s3:::b{n}" for n in range(101)]}]}),
        config(endpoint_url=["https://sts.example.com"]),
        config(external_id="x"),
        config(external_id="has spaces in it"),
        config(external_id=4711),
    ],
)
def test_invalid_configs_are_refused_with_a_config_field_error(value):
    refusal(value)


@pytest.mark.parametrize(
    ("endpoint_url", "code"),
    [
        ("ftp://sts.example.com", "url_scheme_not_allowed"),
        ("http://169.254.169.254/latest/meta-data/", "url_destination_not_allowed"),
        ("http://[fd00:ec2::254]/", "url_destination_not_allowed"),
        ("https://user:pass@sts.example.com", "invalid_url"),
    ],
)
def test_the_endpoint_url_goes_through_the_ssrf_guard(endpoint_url, code):
    refusal(config(endpoint_url=endpoint_url), code)


def test_a_scope_whose_session_policy_is_too_long_for_aws_is_refused_at_save():
    resources = [f"arn:aws:s3:::reports-{n:04}/*" for n in range(70)]
    message = refusal(config(scope_policies={"s3:read": [{**READ, "Resource": resources}]})).message
    assert "2048" in message


@pytest.mark.parametrize("secret", [KEYS, json.dumps(KEYS)])
def test_the_secret_is_an_access_key_pair_sealed_as_compact_json(secret):
    prepared = kinds.prepare_secret("aws_sts", secret)
    assert json.loads(prepared.plaintext) == KEYS
    assert SECRET_KEY not in repr(prepared)


@pytest.mark.parametrize(
    "secret",
    [
        "",
        SECRET_KEY,
        "{not json",
        "[" * 100_000,
        [KEYS],
        {"access_key_id": KEYS["access_key_id"]},
        {**KEYS, "session_token": "FwoGZXIvYXdzE"},
        {**KEYS, "access_key_id": "AKIA-SHORT"},
        {**KEYS, "access_key_id": "AKIA IOSFODNN7EXAMPLE"},
        {**KEYS, "secret_access_key": SECRET_KEY + " "},
        {**KEYS, "secret_access_key": "short"},
        {**KEYS, "secret_access_key": None},
        "x" * (64 * 1024 + 1),
    ],
)
def test_invalid_secrets_are_refused_without_echoing_them(secret):
    with pytest.raises(InvalidRequest) as refused:
        kinds.prepare_secret("aws_sts", secret)
    assert refused.value.code == "invalid_secret"
    assert SECRET_KEY not in refused.value.message
    assert "secret" in refused.value.fields
