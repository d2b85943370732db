import base64
import secrets

import pytest

from keyward.crypto import signing


def new_key() -> bytes:
    return secrets.token_bytes(32)


def key_spellings(key: bytes) -> list[str]:
    """Every way a key could leak into a message: raw, hex, base64 and base64url."""
    return [
        key.hex(),
        base64.b64encode(key).decode(),
        base64.urlsafe_b64encode(key).decode().rstrip("="),
        key.decode("latin-1"),
    ]


@pytest.fixture(autouse=True)
def _fresh_signing_key_cache():
    signing.clear_key_cache()
    yield
    signing.clear_key_cache()


@pytest.fixture
def master_keys(settings):
    """Switch master keys like an operator would: `use(current, previous...)` sets both settings."""

    def use(current: bytes, *previous: bytes) -> None:
        settings.KEYWARD_MASTER_KEY = current
        settings.KEYWARD_MASTER_KEY_PREVIOUS = tuple(previous)

    return use
