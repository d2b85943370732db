"""Envelope encryption: each secret under a fresh AES-256-GCM data key, the data key wrapped by a KEK.

Both layers carry associated data (AAD) naming the owner (an org, or the platform), the purpose,
the object id and the version, so a ciphertext or wrapped key copied into any other row, org or
version fails to open. Rotating a KEK re-wraps data keys only; the data itself is never re-encrypted.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.apps import apps
from django.db import models, transaction

from keyward.crypto import signals
from keyward.crypto.errors import DecryptionError
from keyward.crypto.kms import MAX_KEK_ID_LENGTH, NONCE_BYTES, TAG_BYTES, kek_by_id, kek_for_org, local_keyring

if TYPE_CHECKING:
    from keyward.tenancy.models import Org

PLATFORM_OWNER = "platform"
AAD_FORMAT = 1
DATA_LAYER = "data"
KEY_LAYER = "key"
DATA_KEY_BYTES = 32


@dataclass(frozen=True)
class SealContext:
    """Who and what a sealed value belongs to. `org=None` marks platform-level objects."""

    org: Org | None
    purpose: str
    object_id: str | int
    version: int

    def __post_init__(self):
        if self.org is not None and self.org.pk is None:
            raise ValueError("seal context: the org must be saved first")
        if not self.purpose:
            raise ValueError("seal context: purpose is required")
        if self.object_id is None or str(self.object_id) == "":
            raise ValueError("seal context: object_id is required (the id must be known before sealing)")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise ValueError("seal context: version must be a positive integer")

    @property
    def owner(self) -> str:
        return PLATFORM_OWNER if self.org is None else f"org:{self.org.pk}"

    def aad(self, layer: str) -> bytes:
        """Canonical JSON, so no two different contexts ever encode to the same bytes."""
        return json.dumps(
            {
                "format": AAD_FORMAT,
                "layer": layer,
                "owner": self.owner,
                "purpose": self.purpose,
                "object": str(self.object_id),
                "version": self.version,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()

    def describe(self) -> str:
        return f"{self.purpose} {self.object_id} v{self.version} ({self.owner})"


@dataclass(frozen=True)
class Sealed:
    """What is stored: nonce || ciphertext || tag, the wrapped data key, and the KEK that wrapped it."""

    ciphertext: bytes = field(repr=False)
    wrapped_key: bytes = field(repr=False)
    kek_id: str


def seal(plaintext: bytes, context: SealContext) -> Sealed:
    """Encrypt under a fresh data key, wrapped by the owner's current KEK."""
    if not isinstance(plaintext, bytes):
        raise TypeError("seal() takes bytes")
    data_key = AESGCM.generate_key(bit_length=DATA_KEY_BYTES * 8)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = nonce + AESGCM(data_key).encrypt(nonce, plaintext, context.aad(DATA_LAYER))
    kek = kek_for_org(context.org)
    return Sealed(ciphertext=ciphertext, wrapped_key=kek.wrap(data_key, context.aad(KEY_LAYER)), kek_id=kek.kek_id)


def unseal(sealed: Sealed, context: SealContext) -> bytes:
    """Decrypt, or raise DecryptionError (never saying more than which object failed and why)."""
    data_key = _unwrap_data_key(sealed, context)
    if len(sealed.ciphertext) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionError(f"cannot open {context.describe()}: the ciphertext is malformed")
    nonce, body = sealed.ciphertext[:NONCE_BYTES], sealed.ciphertext[NONCE_BYTES:]
    try:
        return AESGCM(data_key).decrypt(nonce, body, context.aad(DATA_LAYER))
    except InvalidTag:
        raise DecryptionError(f"cannot open {context.describe()}: wrong context or tampered ciphertext") from None


def rewrap(sealed: Sealed, context: SealContext) -> Sealed:
    """The same ciphertext with its data key re-wrapped by the owner's current KEK (a no-op if it already is)."""
    target = kek_for_org(context.org)
    if sealed.kek_id == target.kek_id:
        return sealed
    data_key = _unwrap_data_key(sealed, context)
    return Sealed(
        ciphertext=sealed.ciphertext,
        wrapped_key=target.wrap(data_key, context.aad(KEY_LAYER)),
        kek_id=target.kek_id,
    )


def _unwrap_data_key(sealed: Sealed, context: SealContext) -> bytes:
    try:
        data_key = kek_by_id(sealed.kek_id).unwrap(sealed.wrapped_key, context.aad(KEY_LAYER))
    except DecryptionError as exc:
        raise type(exc)(f"cannot open {context.describe()}: {exc}") from None
    if len(data_key) != DATA_KEY_BYTES:
        raise DecryptionError(f"cannot open {context.describe()}: the data key has the wrong length")
    return data_key


FINGERPRINT_HEX_CHARS = 16


def fingerprint(plaintext: bytes) -> str:
    """The first 16 hex characters (64 bits) of SHA-256 of the secret: enough to tell versions apart.

    Publishing an unsalted hash is acceptable because provider secrets are high-entropy keys (API keys,
    private keys, client secrets) that no one can guess and check against a hash; 64 bits also
    leave most of the digest unpublished. It must never be used for low-entropy values like passwords.
    """
    return hashlib.sha256(plaintext).hexdigest()[:FINGERPRINT_HEX_CHARS]


class SealedSecretFields(models.Model):
    """Columns for one sealed value. A model using it says, in `seal_context`, what its row binds to.

    Every installed model with this mixin is found by `sealed_models()`, so master-key rotation
    can never miss one.
    """

    ciphertext = models.BinaryField(editable=False)
    wrapped_key = models.BinaryField(editable=False)
    kek_id = models.CharField(max_length=MAX_KEK_ID_LENGTH, editable=False, db_index=True)

    # Relations `seal_context` reads, so rotation can load them with the rows in one query.
    seal_select_related: tuple[str, ...] = ()

    class Meta:
        abstract = True

    def seal_context(self) -> SealContext:
        raise NotImplementedError(f"{type(self).__name__} must define seal_context()")

    @property
    def sealed(self) -> Sealed:
        return Sealed(ciphertext=bytes(self.ciphertext), wrapped_key=bytes(self.wrapped_key), kek_id=self.kek_id)

    def seal_secret(self, plaintext: bytes) -> None:
        sealed = seal(plaintext, self.seal_context())
        self.ciphertext, self.wrapped_key, self.kek_id = sealed.ciphertext, sealed.wrapped_key, sealed.kek_id

    def unseal_secret(self) -> bytes:
        return unseal(self.sealed, self.seal_context())


class SealedDestinationFields(SealedSecretFields):
    """An outbound endpoint: its URL and signing secret sealed together (a Slack-style URL is itself a
    secret), and only the host kept in the clear, for display and audit."""

    host = models.CharField(max_length=255)

    class Meta:
        abstract = True

    def seal_destination(self, url: str, secret: str) -> None:
        self.host = urlsplit(url).hostname or ""
        self.seal_secret(json.dumps({"url": url, "secret": secret}).encode())

    def unseal_destination(self) -> tuple[str, str]:
        """(url, secret); raises DecryptionError if the seal cannot be opened."""
        sealed = json.loads(self.unseal_secret())
        return sealed["url"], sealed["secret"]


def sealed_models() -> list[type[SealedSecretFields]]:
    """The registry: every installed concrete model that holds sealed data."""
    return [model for model in apps.get_models() if issubclass(model, SealedSecretFields)]


@dataclass
class RewrapReport:
    """What `rewrap_all` did for one model. `failures` holds `pk: reason` lines, never key material."""

    model: str
    rewrapped: int = 0
    already_current: int = 0
    failures: list[str] = field(default_factory=list)


def rewrap_all(*, batch_size: int = 100, performed_by: str = "keyward") -> list[RewrapReport]:
    """Re-wrap every data key that its owner's current KEK did not wrap. Idempotent; rows are locked in
    small batches, each batch its own transaction, so a long run never holds many locks for long.

    A run that re-wrapped or failed to re-wrap anything is one row on the platform audit chain."""
    reports = [_rewrap_model(model, batch_size) for model in sealed_models()]
    rewrapped = sum(report.rewrapped for report in reports)
    failed = sum(len(report.failures) for report in reports)
    if rewrapped or failed:
        signals.announce(
            signals.MASTER_KEY_REWRAPPED,
            performed_by=performed_by,
            detail={"kek_id": local_keyring().current.kek_id, "rewrapped": rewrapped, "failed": failed},
            failed=bool(failed),
        )
    return reports


def _rewrap_model(model: type[SealedSecretFields], batch_size: int) -> RewrapReport:
    report = RewrapReport(model=model._meta.label)
    last_pk = None
    while True:
        with transaction.atomic():
            rows = model.objects.select_related(*model.seal_select_related).select_for_update(of=("self",))
            if last_pk is not None:
                rows = rows.filter(pk__gt=last_pk)
            batch = list(rows.order_by("pk")[:batch_size])
            for row in batch:
                _rewrap_row(model, row, report)
        if len(batch) < batch_size:
            return report
        last_pk = batch[-1].pk


def _rewrap_row(model: type[SealedSecretFields], row: SealedSecretFields, report: RewrapReport) -> None:
    try:
        sealed = row.sealed
        rewrapped = rewrap(sealed, row.seal_context())
    except DecryptionError as exc:
        report.failures.append(f"{row.pk}: {exc}")
        return
    if rewrapped is sealed:
        report.already_current += 1
        return
    model.objects.filter(pk=row.pk).update(wrapped_key=rewrapped.wrapped_key, kek_id=rewrapped.kek_id)
    report.rewrapped += 1
