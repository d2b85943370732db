"""Crypto failures. Messages name what failed and why, never key material or plaintext."""


class DecryptionError(Exception):
    """Sealed data could not be opened: wrong key, wrong associated data, or tampering.

    One type for every cause, so callers handle them alike and an attacker learns nothing
    from which check failed.
    """


class UnknownKekError(DecryptionError):
    """The key-encryption key named by a row is not configured here (e.g. a master key was dropped too early)."""
