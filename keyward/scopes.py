"""Scopes and scope patterns, shared by agent grants, policies and delegation narrowing.

A scope is a token such as `charges:read` (letters, digits and `._-/:`). A pattern is a scope,
a prefix wildcard ending in `:*` (`charges:*` matches `charges:read` and `charges:refunds:write`),
or `*` (anything). A request's `scope` is one or more scopes separated by spaces.
"""

import re

MAX_SCOPES_PER_REQUEST = 20
SCOPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*(?::[A-Za-z0-9._/-]+)*$")
MAX_SCOPE_LENGTH = 200
EXACT_PRECISION = 100


def parse_scopes(text: str) -> list[str]:
    """The distinct scopes of a space-separated request, in order; ValueError when malformed."""
    if not isinstance(text, str):
        raise ValueError("scope must be a string of space-separated scopes")
    scopes = list(dict.fromkeys(text.split()))
    if not scopes:
        raise ValueError("scope must name at least one scope")
    if len(scopes) > MAX_SCOPES_PER_REQUEST:
        raise ValueError(f"at most {MAX_SCOPES_PER_REQUEST} scopes per request")
    for scope in scopes:
        if len(scope) > MAX_SCOPE_LENGTH or not SCOPE.fullmatch(scope):
            raise ValueError(f"{scope[:50]!r} is not a valid scope")
    return scopes


def is_valid_pattern(pattern: str) -> bool:
    if pattern == "*":
        return True
    if len(pattern) > MAX_SCOPE_LENGTH:
        return False
    if pattern.endswith(":*"):
        return bool(SCOPE.fullmatch(pattern[:-2]))
    return bool(SCOPE.fullmatch(pattern))


def matches(pattern: str, scope: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith(":*"):
        return scope.startswith(pattern[:-1])
    return pattern == scope


def wildcard_patterns(scope: str) -> list[str]:
    """Every pattern that matches `scope`, most precise first: `a:b:c` -> a:b:c, a:b:*, a:*, *."""
    parts = scope.split(":")
    return [scope] + [":".join(parts[:n]) + ":*" for n in range(len(parts) - 1, 0, -1)] + ["*"]


def precision(pattern: str) -> int:
    """How narrowly a pattern matches: exact > longer prefix > shorter prefix > `*` (0)."""
    if pattern in ("", "*"):
        return 0
    if pattern.endswith(":*"):
        return min(pattern.count(":"), EXACT_PRECISION - 1)
    return EXACT_PRECISION


def is_subset(requested: list[str], allowed_patterns: list[str]) -> bool:
    """Every requested scope is matched by some allowed pattern."""
    return all(any(matches(pattern, scope) for pattern in allowed_patterns) for scope in requested)
