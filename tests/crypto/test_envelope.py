"""Envelope encryption: round trips, and every way a sealed value can be tampered with or moved."""

import dataclasses

import pytest

from keyward.crypto import signing
from keyward.crypto.envelope import SealContext, Sealed, rewrap, seal, sealed_models, unseal
from keyward.crypto.errors import DecryptionError, UnknownKekError
from keyward.crypto.kms import LocalKek, kek_by_id
from keyward.crypto.models import SigningKey
from keyward.tenancy.models import Org
from tests.crypto.conftest import key_spellings, new_key
from tests.factories import make_org

pytestmark = pytest.mark.django_db

PLAINTEXT = b"sk_live_the-provider-secret-4242"


@pytest.fixture
def org():
    return make_org()


def context(org, *, purpose="provider_secret", object_id="prov-1", version=1) -> SealContext:
    return SealContext(org=org, purpose=purpose, object_id=object_id, version=version)


def data_key_of(sealed: Sealed, ctx: SealContext) -> bytes:
    """The unwrapped data key, so tests can check that it never leaks."""
    return kek_by_id(sealed.kek_id).unwrap(sealed.wrapped_key, ctx.aad("key"))


def test_round_trip_for_an_org_and_for_the_platform(org, settings):
    for ctx in (context(org), context(None, purpose="signing_key", object_id="kid-1")):
        sealed = seal(PLAINTEXT, ctx)
        assert unseal(sealed, ctx) == PLAINTEXT
        assert PLAINTEXT not in sealed.ciphertext
        assert sealed.kek_id == LocalKek(settings.KEYWARD_MASTER_KEY).kek_id


def test_each_seal_uses_a_fresh_data_key_and_nonce(org):
    first, second = seal(PLAINTEXT, context(org)), seal(PLAINTEXT, context(org))
    assert first.ciphertext != second.ciphertext
    assert first.ciphertext[:12] != second.ciphertext[:12]
    assert data_key_of(first, context(org)) != data_key_of(second, context(org))


def test_repr_of_a_sealed_value_shows_no_bytes(org):
    sealed = seal(PLAINTEXT, context(org))
    assert repr(sealed) == f"Sealed(kek_id={sealed.kek_id!r})"


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


@pytest.mark.parametrize(
    ("field", "tamper"),
    [
        ("ciphertext", lambda b: flip(b, 0)),  # nonce
        ("ciphertext", lambda b: flip(b, 14)),  # body
        ("ciphertext", lambda b: flip(b, len(b) - 1)),  # tag
        ("ciphertext", lambda b: b[:-1]),
        ("ciphertext", lambda b: b[:10]),
        ("ciphertext", lambda b: b + b"\x00"),
        ("wrapped_key", lambda b: flip(b, 0)),
        ("wrapped_key", lambda b: flip(b, 20)),
        ("wrapped_key", lambda b: flip(b, len(b) - 1)),
        ("wrapped_key", lambda b: b[:12]),
        ("wrapped_key", lambda b: b""),
    ],
)
def test_tampering_fails_to_decrypt(org, field, tamper):
    ctx = context(org)
    sealed = seal(PLAINTEXT, ctx)
    tampered = dataclasses.replace(sealed, **{field: tamper(getattr(sealed, field))})
    with pytest.raises(DecryptionError):
        unseal(tampered, ctx)


def test_a_wrapped_key_swapped_in_from_another_row_fails(org):
    ctx_a, ctx_b = context(org, object_id="a"), context(org, object_id="b")
    a, b = seal(PLAINTEXT, ctx_a), seal(b"other secret", ctx_b)
    with pytest.raises(DecryptionError):
        unseal(dataclasses.replace(a, wrapped_key=b.wrapped_key), ctx_a)


@pytest.mark.parametrize(
    "moved_to",
    [
        pytest.param({"org": "other"}, id="another org"),
        pytest.param({"org": None}, id="the platform"),
        pytest.param({"object_id": "prov-2"}, id="another object"),
        pytest.param({"version": 2}, id="another version"),
        pytest.param({"purpose": "webhook_secret"}, id="another purpose"),
    ],
)
def test_a_sealed_value_moved_elsewhere_fails_to_decrypt(org, moved_to):
    sealed = seal(PLAINTEXT, context(org))
    fields = {"org": org, "purpose": "provider_secret", "object_id": "prov-1", "version": 1, **moved_to}
    if fields["org"] == "other":
        fields["org"] = make_org()
    with pytest.raises(DecryptionError, match="cannot open"):
        unseal(sealed, SealContext(**fields))


def test_integer_and_string_object_ids_name_the_same_object(org):
    sealed = seal(PLAINTEXT, context(org, object_id=1))
    assert unseal(sealed, context(org, object_id="1")) == PLAINTEXT


def test_the_data_layer_and_the_key_layer_use_different_associated_data(org):
    assert context(org).aad("data") != context(org).aad("key")


def test_an_unknown_kek_id_fails_clearly(org):
    sealed = dataclasses.replace(seal(PLAINTEXT, context(org)), kek_id="local:ffffffffffffffff")
    with pytest.raises(UnknownKekError, match="'local:ffffffffffffffff' is not configured"):
        unseal(sealed, context(org))


def test_no_failure_message_contains_plaintext_or_key_material(org, master_keys):
    master = new_key()
    master_keys(master)
    ctx = context(org)
    sealed = seal(PLAINTEXT, ctx)
    data_key = data_key_of(sealed, ctx)
    attempts = [
        (dataclasses.replace(sealed, ciphertext=flip(sealed.ciphertext, 20)), ctx),
        (dataclasses.replace(sealed, wrapped_key=flip(sealed.wrapped_key, 20)), ctx),
        (dataclasses.replace(sealed, kek_id="local:0123456789abcdef"), ctx),
        (sealed, context(make_org())),
        (sealed, context(org, version=9)),
    ]
    messages = []
    for bad, bad_ctx in attempts:
        with pytest.raises(DecryptionError) as caught:
            unseal(bad, bad_ctx)
        assert caught.value.__cause__ is None
        messages.append(f"{caught.value} {caught.value!r}")
    master_keys(new_key())  # the master key is gone entirely: the row names a key we no longer have
    with pytest.raises(UnknownKekError) as caught:
        unseal(sealed, ctx)
    messages.append(f"{caught.value} {caught.value!r}")

    for message in messages:
        assert PLAINTEXT.decode() not in message
        for secret in (*key_spellings(master), *key_spellings(data_key)):
            assert secret not in message


def test_seal_context_refuses_what_cannot_be_bound():
    with pytest.raises(ValueError, match="saved"):
        SealContext(org=Org(name="unsaved"), purpose="p", object_id="x", version=1)
    with pytest.raises(ValueError, match="object_id"):
        SealContext(org=None, purpose="p", object_id=None, version=1)
    with pytest.raises(ValueError, match="purpose"):
        SealContext(org=None, purpose="", object_id="x", version=1)
    for version in (0, True, "1"):
        with pytest.raises(ValueError, match="version"):
            SealContext(org=None, purpose="p", object_id="x", version=version)


def test_seal_takes_bytes_only(org):
    with pytest.raises(TypeError):
        seal(PLAINTEXT.decode(), context(org))


def test_rewrap_changes_only_the_wrapped_key_and_survives_losing_the_old_key(org, master_keys):
    old, new = new_key(), new_key()
    master_keys(old)
    ctx = context(org)
    sealed = seal(PLAINTEXT, ctx)

    master_keys(new, old)
    rewrapped = rewrap(sealed, ctx)
    assert rewrapped.ciphertext == sealed.ciphertext
    assert rewrapped.wrapped_key != sealed.wrapped_key
    assert rewrapped.kek_id == LocalKek(new).kek_id
    assert rewrap(rewrapped, ctx) is rewrapped

    master_keys(new)
    assert unseal(rewrapped, ctx) == PLAINTEXT
    with pytest.raises(UnknownKekError):
        unseal(sealed, ctx)


def test_rewrap_refuses_a_value_from_another_context(org, master_keys):
    old = new_key()
    master_keys(old)
    sealed = seal(PLAINTEXT, context(org))
    master_keys(new_key(), old)
    with pytest.raises(DecryptionError):
        rewrap(sealed, context(make_org()))


def test_the_registry_finds_every_sealed_model():
    assert SigningKey in sealed_models()


def test_a_signing_key_row_copied_onto_another_row_fails_to_open():
    first = signing.active_signing_key()
    second = signing.rotate_signing_key().active
    second.ciphertext, second.wrapped_key, second.kek_id = first.ciphertext, first.wrapped_key, first.kek_id
    with pytest.raises(DecryptionError, match="signing_key"):
        second.unseal_secret()
    assert first.unseal_secret()
