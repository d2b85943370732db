"""keyward's signing keys: signing, rotation, retirement, the JWKS document and the key source."""

import base64
import hashlib
import json
import threading
import time
from datetime import timedelta

import josepy
import pytest
from cryptography.hazmat.primitives import serialization
from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from keyward.crypto import signing
from keyward.crypto.errors import DecryptionError
from keyward.crypto.models import SigningKey, SigningKeyState
from keyward.jose.types import TokenType

pytestmark = pytest.mark.django_db

PUBLIC_MEMBERS = {"kid", "kty", "crv", "x", "y", "use", "alg"}


def claims(ttl: int = 300) -> dict:
    now = int(time.time())
    return {"iss": "http://localhost:8000", "sub": "alice", "iat": now, "exp": now + ttl}


def segments(token: str) -> tuple[dict, dict]:
    header, payload, _ = token.split(".")
    decode = lambda part: json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # noqa: E731
    return decode(header), decode(payload)


def rfc7638_thumbprint(jwk: dict) -> str:
    canonical = json.dumps({name: jwk[name] for name in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).decode().rstrip("=")


@pytest.mark.parametrize("token_type", list(TokenType))
def test_sign_token_header_and_payload(token_type):
    token = signing.sign_token(claims(), token_type)
    header, payload = segments(token)
    active = SigningKey.objects.get(state=SigningKeyState.ACTIVE)
    assert header == {"alg": "ES256", "kid": active.kid, "typ": token_type.value}
    assert payload["sub"] == "alice"
    assert josepy.JWS.from_compact(token.encode()).verify(signing.SigningKeySource().key_for(active.kid))


def test_sign_token_refuses_unknown_token_types():
    with pytest.raises(ValueError, match="TokenType"):
        signing.sign_token(claims(), "JWT")


@pytest.mark.parametrize(
    "bad_claims",
    [
        pytest.param({"sub": "alice"}, id="no exp"),
        pytest.param({"exp": "soon"}, id="exp not an integer"),
        pytest.param({"exp": True}, id="exp a boolean"),
    ],
)
def test_sign_token_needs_an_integer_exp(bad_claims):
    with pytest.raises(signing.TokenLifetimeError, match="exp"):
        signing.sign_token(bad_claims, TokenType.CREDENTIAL)


def test_no_token_outlives_the_platform_ceiling(settings):
    settings.KEYWARD_MAX_CREDENTIAL_TTL = 600
    signing.sign_token(claims(ttl=600), TokenType.CREDENTIAL)
    with pytest.raises(signing.TokenLifetimeError, match="KEYWARD_MAX_CREDENTIAL_TTL"):
        signing.sign_token(claims(ttl=600 + 3600), TokenType.DELEGATION)


def test_the_first_key_is_created_lazily_and_its_kid_is_the_thumbprint():
    assert not SigningKey.objects.exists()
    signing.sign_token(claims(), TokenType.CREDENTIAL)
    key = SigningKey.objects.get()
    assert key.state == SigningKeyState.ACTIVE
    assert key.kid == rfc7638_thumbprint(key.public_jwk)
    assert set(key.public_jwk) == {"kty", "crv", "x", "y"}


def test_the_private_half_is_stored_sealed_in_the_platform_context():
    key = signing.active_signing_key()
    der = key.unseal_secret()
    assert der not in bytes(key.ciphertext)
    context = key.seal_context()
    assert (context.org, context.purpose, context.object_id) == (None, "signing_key", key.kid)


def test_the_unsealed_private_key_is_cached_per_kid(monkeypatch):
    signing.sign_token(claims(), TokenType.CREDENTIAL)
    unseals = []
    original = SigningKey.unseal_secret
    monkeypatch.setattr(SigningKey, "unseal_secret", lambda self: unseals.append(self.kid) or original(self))

    for _ in range(3):
        signing.sign_token(claims(), TokenType.CREDENTIAL)
    assert unseals == []

    new_kid = signing.rotate_signing_key().active.kid
    for _ in range(3):
        signing.sign_token(claims(), TokenType.CREDENTIAL)
    assert unseals == [new_kid]


def test_a_corrupted_active_key_fails_closed():
    key = signing.active_signing_key()
    SigningKey.objects.filter(pk=key.pk).update(ciphertext=bytes(key.ciphertext)[:-1] + b"\x00")
    with pytest.raises(DecryptionError):
        signing.sign_token(claims(), TokenType.CREDENTIAL)


def test_rotation_keeps_the_old_key_published_for_the_longest_credential_lifetime(settings):
    settings.KEYWARD_MAX_CREDENTIAL_TTL = 7200
    first = signing.active_signing_key()
    rotation = signing.rotate_signing_key()

    old = SigningKey.objects.get(pk=first.pk)
    assert rotation.retiring.pk == first.pk
    assert old.state == SigningKeyState.RETIRING
    assert old.retire_after - old.retiring_at == timedelta(seconds=7200) + signing.RETIRE_LEEWAY
    assert SigningKey.objects.get(state=SigningKeyState.ACTIVE).kid == rotation.active.kid != first.kid
    assert [key["kid"] for key in signing.jwks()["keys"]] == [rotation.active.kid, first.kid]


def test_rotation_without_any_key_just_creates_one():
    rotation = signing.rotate_signing_key()
    assert rotation.retiring is None
    assert SigningKey.objects.get().kid == rotation.active.kid


def test_retire_expired_keys_only_retires_keys_past_their_deadline():
    first = signing.active_signing_key()
    signing.rotate_signing_key()
    retiring = SigningKey.objects.get(pk=first.pk)

    assert signing.retire_expired_keys(now=retiring.retire_after - timedelta(seconds=1)) == []
    assert signing.SigningKeySource().key_for(first.kid) is not None

    assert signing.retire_expired_keys(now=retiring.retire_after) == [first.kid]
    retired = SigningKey.objects.get(pk=first.pk)
    assert (retired.state, retired.retired_at) == (SigningKeyState.RETIRED, retiring.retire_after)
    assert first.kid not in [key["kid"] for key in signing.jwks()["keys"]]
    assert signing.SigningKeySource().key_for(first.kid) is None
    assert signing.retire_expired_keys(now=retiring.retire_after + timedelta(days=1)) == []


def test_jwks_publishes_public_members_only():
    signing.active_signing_key()
    signing.rotate_signing_key()
    document = signing.jwks()
    assert len(document["keys"]) == 2
    for jwk in document["keys"]:
        assert set(jwk) == PUBLIC_MEMBERS
        assert (jwk["kty"], jwk["crv"], jwk["use"], jwk["alg"]) == ("EC", "P-256", "sig", "ES256")
        assert jwk["kid"] == rfc7638_thumbprint(jwk)


def test_jwks_never_publishes_a_private_member_even_if_one_was_stored():
    """Defence in depth: even a row whose stored JWK wrongly holds `d` publishes only public members."""
    key = signing.active_signing_key()
    private_jwk = josepy.JWKEC(key=serialization.load_der_private_key(key.unseal_secret(), None)).to_json()
    SigningKey.objects.filter(pk=key.pk).update(public_jwk=private_jwk)
    document = signing.jwks()
    assert all("d" not in jwk for jwk in document["keys"])
    assert private_jwk["d"] not in json.dumps(document)
    assert "d" not in signing.SigningKeySource().key_for(key.kid).to_json()


def test_key_source_answers_only_for_published_kids():
    source = signing.SigningKeySource()
    key = signing.active_signing_key()
    found = source.key_for(key.kid)
    assert isinstance(found, josepy.JWKEC)
    assert "d" not in found.to_json()
    assert found.to_json() == {k: key.public_jwk[k] for k in ("kty", "crv", "x", "y")}
    assert source.algorithms == frozenset({"ES256"})
    for kid in (None, "", "unknown", "x" * 65):
        assert source.key_for(kid) is None


def test_a_kid_that_is_no_thumbprint_is_unknown_without_a_query(django_assert_num_queries):
    """A token's kid is attacker input: a NUL in it failed the lookup on PostgreSQL (a 500)."""
    key = signing.active_signing_key()
    source = signing.SigningKeySource()
    with django_assert_num_queries(0):
        for kid in (key.kid + "\x00", f"{key.kid}' OR '1'='1", "../" + key.kid, key.kid + " ", key.kid + "="):
            assert source.key_for(kid) is None


def test_exactly_one_active_key_is_enforced_by_the_database():
    key = signing.active_signing_key()
    with pytest.raises(IntegrityError), transaction.atomic():
        SigningKey.objects.create(
            kid="second", public_jwk=key.public_jwk, ciphertext=b"x", wrapped_key=b"x", kek_id="local:x"
        )


def _race(workers: int, job) -> list:
    barrier = threading.Barrier(workers)
    results: list = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(job())
        except Exception as exc:  # surfaced by the assertions of the calling test
            results.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_threads_creating_the_first_key_at_once_leave_exactly_one(monkeypatch):
    """Both threads are made to miss the lookup, so both really insert and the constraint decides."""
    seen = threading.local()
    real_find = signing._find_active_key
    both_missed = threading.Barrier(2)

    def find_after_both_missed():
        if getattr(seen, "missed", False):
            return real_find()
        seen.missed = True
        both_missed.wait(timeout=10)
        return None

    monkeypatch.setattr(signing, "_find_active_key", find_after_both_missed)
    results = _race(2, lambda: signing.sign_token(claims(), TokenType.CREDENTIAL))

    assert all(isinstance(token, str) for token in results), results
    assert SigningKey.objects.count() == 1
    active = SigningKey.objects.get(state=SigningKeyState.ACTIVE)
    assert {segments(token)[0]["kid"] for token in results} == {active.kid}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_many_threads_signing_on_an_empty_table_share_one_key():
    results = _race(8, lambda: signing.sign_token(claims(), TokenType.CREDENTIAL))
    assert all(isinstance(token, str) for token in results), results
    assert SigningKey.objects.filter(state=SigningKeyState.ACTIVE).count() == 1
    assert len({segments(token)[0]["kid"] for token in results}) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_rotations_both_happen_and_leave_one_active_key():
    first = signing.active_signing_key()
    results = _race(2, lambda: signing.rotate_signing_key().active.kid)

    assert all(isinstance(kid, str) for kid in results), results
    assert SigningKey.objects.filter(state=SigningKeyState.ACTIVE).count() == 1
    assert SigningKey.objects.filter(state=SigningKeyState.RETIRING).count() == 2
    assert SigningKey.objects.get(pk=first.pk).state == SigningKeyState.RETIRING


def test_rotation_and_retirement_are_platform_audit_rows():
    from keyward.audit.models import AuditEvent
    from keyward.audit.services import verify_chain
    from keyward.crypto.tasks import retire_signing_keys

    first = signing.active_signing_key()
    rotation = signing.rotate_signing_key(performed_by="manage.py rotate_signing_key")
    rotated = AuditEvent.objects.get(org=None, event_type="signing_key.rotated")
    assert (rotated.actor_type, rotated.actor_name) == ("system", "manage.py rotate_signing_key")
    assert rotated.detail == {
        "kid": rotation.active.kid,
        "retiring_kid": first.kid,
        "retire_after": rotation.retiring.retire_after.isoformat(),
    }

    assert retire_signing_keys.delay().get() == []  # nothing due: no row
    assert not AuditEvent.objects.filter(event_type="signing_key.retired").exists()
    SigningKey.objects.filter(kid=first.kid).update(retire_after=timezone.now() - timedelta(seconds=1))
    assert retire_signing_keys.delay().get() == [first.kid]
    retired = AuditEvent.objects.get(org=None, event_type="signing_key.retired")
    assert (retired.actor_name, retired.detail) == ("signing-key-retirement", {"kids": [first.kid]})
    assert verify_chain(None).ok
    serialized = str(list(AuditEvent.objects.values()))
    assert "PRIVATE" not in serialized
    assert "private" not in serialized


def test_a_rotation_whose_audit_row_cannot_be_written_does_not_happen(monkeypatch):
    from keyward.audit import receivers
    from keyward.audit.writer import AuditUnavailable

    first = signing.active_signing_key()

    def audit_down(**kwargs):
        raise AuditUnavailable("audit log unavailable")

    monkeypatch.setattr(receivers, "record_event", audit_down)
    with pytest.raises(AuditUnavailable):
        signing.rotate_signing_key()
    assert list(SigningKey.objects.values_list("kid", "state")) == [(first.kid, SigningKeyState.ACTIVE)]
