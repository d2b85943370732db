"""Key-encryption keys: the local implementation, the keyring and the lookups."""

import hashlib

import pytest

from keyward.crypto.errors import DecryptionError, UnknownKekError
from keyward.crypto.kms import LocalKek, kek_by_id, kek_for_org, local_keyring
from tests.crypto.conftest import key_spellings, new_key

AAD = b"context"
DATA_KEY = bytes(range(32))


def test_local_kek_id_is_a_short_fingerprint_of_the_key():
    key = new_key()
    assert LocalKek(key).kek_id == "local:" + hashlib.sha256(key).hexdigest()[:16]
    assert key.hex() not in repr(LocalKek(key))


def test_wrap_round_trips_and_uses_a_fresh_nonce_each_time():
    kek = LocalKek(new_key())
    first, second = kek.wrap(DATA_KEY, AAD), kek.wrap(DATA_KEY, AAD)
    assert first != second
    assert DATA_KEY not in first
    assert kek.unwrap(first, AAD) == DATA_KEY == kek.unwrap(second, AAD)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda w: bytes([w[0] ^ 1]) + w[1:], id="nonce"),
        pytest.param(lambda w: w[:20] + bytes([w[20] ^ 1]) + w[21:], id="body"),
        pytest.param(lambda w: w[:-1] + bytes([w[-1] ^ 1]), id="tag"),
        pytest.param(lambda w: w[:28], id="truncated"),
        pytest.param(lambda w: b"", id="empty"),
    ],
)
def test_tampered_wrapped_key_fails(tamper):
    kek = LocalKek(new_key())
    with pytest.raises(DecryptionError):
        kek.unwrap(tamper(kek.wrap(DATA_KEY, AAD)), AAD)


def test_wrong_aad_or_wrong_key_fails_without_leaking_keys():
    key, other = new_key(), new_key()
    wrapped = LocalKek(key).wrap(DATA_KEY, AAD)
    errors = []
    for kek, aad in ((LocalKek(key), b"other context"), (LocalKek(other), AAD)):
        with pytest.raises(DecryptionError) as caught:
            kek.unwrap(wrapped, aad)
        errors.append(caught.value)
    for error in errors:
        text = f"{error} {error!r}"
        assert error.__cause__ is None
        for secret in (*key_spellings(key), *key_spellings(other), *key_spellings(DATA_KEY)):
            assert secret not in text


def test_local_kek_refuses_a_key_of_the_wrong_size():
    with pytest.raises(ValueError, match="32 bytes"):
        LocalKek(b"short")


def test_keyring_wraps_with_the_current_key_and_finds_previous_ones(master_keys):
    current, old, older = new_key(), new_key(), new_key()
    master_keys(current, old, older)

    assert kek_for_org(None).kek_id == LocalKek(current).kek_id
    assert local_keyring().current.kek_id == LocalKek(current).kek_id
    wrapped = LocalKek(older).wrap(DATA_KEY, AAD)
    assert kek_by_id(LocalKek(older).kek_id).unwrap(wrapped, AAD) == DATA_KEY


@pytest.mark.parametrize("kek_id", ["local:0000000000000000", "aws-kms:arn:aws:kms:eu-west-1:1:key/x", "", "local"])
def test_an_unknown_kek_id_is_a_clear_error(master_keys, kek_id):
    master_keys(new_key())
    with pytest.raises(UnknownKekError, match="KEYWARD_MASTER_KEY_PREVIOUS") as caught:
        kek_by_id(kek_id)
    assert isinstance(caught.value, DecryptionError)
    assert repr(kek_id) in str(caught.value)
