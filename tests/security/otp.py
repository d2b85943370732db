"""TOTP codes computed for a pinned clock, as the user's phone would show them."""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

from django_otp.oath import hotp

STEP = 30


@contextmanager
def pinned_otp_clock() -> Iterator[mock.MagicMock]:
    """django-otp's clock, at the start of a time step so every code below stays valid for the test."""
    now = (int(time.time()) // STEP) * STEP + 1.0
    with mock.patch("django_otp.plugins.otp_totp.models.time") as clock:
        clock.time.return_value = now
        yield clock


def code_at(key_hex: str, unix_time: float) -> str:
    """What the user's phone shows at `unix_time` (RFC 6238: SHA-1, 6 digits, 30 s steps from 0)."""
    return f"{hotp(bytes.fromhex(key_hex), int(unix_time) // STEP):06d}"
