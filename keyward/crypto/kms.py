"""Key-encryption keys (KEKs): what wraps the per-secret data keys of the envelope.

Today every KEK is a local master key: `KEYWARD_MASTER_KEY` wraps new data keys and the keys in
`KEYWARD_MASTER_KEY_PREVIOUS` only unwrap old ones until `manage.py rotate_master_key` has
re-wrapped them. A customer-managed KMS key is another `Kek` implementation: `kek_for_org` returns
it for the orgs that configured one, and `kek_by_id` resolves its id scheme (`<scheme>:<key id>`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

from keyward.crypto.errors import DecryptionError, UnknownKekError

if TYPE_CHECKING:
    from keyward.tenancy.models import Org

LOCAL_SCHEME = "local"
NONCE_BYTES = 12
TAG_BYTES = 16
MAX_KEK_ID_LENGTH = 200


class Kek(Protocol):
    """Wraps and unwraps data keys; `aad` binds each wrapped key to the row it belongs to."""

    @property
    def kek_id(self) -> str: ...

    def wrap(self, data_key: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes: ...


class LocalKek:
    """AES-256-GCM under a master key; output is nonce (96 random bits) || ciphertext || tag."""

    __slots__ = ("_aead", "kek_id")

    def __init__(self, key: bytes):
        if len(key) != 32:
            raise ValueError("a local key-encryption key must be exactly 32 bytes")
        self._aead = AESGCM(key)
        self.kek_id = f"{LOCAL_SCHEME}:{hashlib.sha256(key).hexdigest()[:16]}"

    def __repr__(self) -> str:
        return f"LocalKek({self.kek_id})"

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        if len(wrapped) <= NONCE_BYTES + TAG_BYTES:
            raise DecryptionError(f"the wrapped data key is malformed (key-encryption key {self.kek_id})")
        try:
            return self._aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)
        except InvalidTag:
            raise DecryptionError(
                f"the data key does not unwrap with {self.kek_id}: wrong key, wrong context or tampered data"
            ) from None


@dataclass(frozen=True)
class LocalKeyring:
    """The current master key (wraps) and the previous ones (unwrap only, during a rotation)."""

    current: LocalKek
    previous: tuple[LocalKek, ...]

    def find(self, kek_id: str) -> LocalKek | None:
        for kek in (self.current, *self.previous):
            if kek.kek_id == kek_id:
                return kek
        return None


def local_keyring() -> LocalKeyring:
    """Read from settings on every call: building it is cheap and it can never be stale after a change."""
    return LocalKeyring(
        current=LocalKek(settings.KEYWARD_MASTER_KEY),
        previous=tuple(LocalKek(key) for key in settings.KEYWARD_MASTER_KEY_PREVIOUS),
    )


def kek_for_org(org: Org | None) -> Kek:
    """The KEK that wraps new data keys for `org` (None: platform-level objects such as signing keys).

    Every org uses the local master key until orgs can bring their own KMS key; that lookup goes here.
    """
    return local_keyring().current


def kek_by_id(kek_id: str) -> Kek:
    """The KEK a stored data key names, current or previous; unknown ids fail loudly, never silently."""
    scheme = kek_id.partition(":")[0]
    kek = local_keyring().find(kek_id) if scheme == LOCAL_SCHEME else None
    if kek is None:
        raise UnknownKekError(
            f"key-encryption key {kek_id!r} is not configured; if it is an earlier master key, "
            "list it in KEYWARD_MASTER_KEY_PREVIOUS and run `manage.py rotate_master_key`"
        )
    return kek
