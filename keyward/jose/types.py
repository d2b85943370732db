"""The token types keyward signs. Each carries its own `typ` header, so one is never accepted as another."""

from enum import StrEnum


class TokenType(StrEnum):
    CREDENTIAL = "kw-cred+jwt"
    DELEGATION = "kw-deleg+jwt"


KEYWARD_TOKEN_TYPES = frozenset(TokenType)
