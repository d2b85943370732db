"""Scopes and scope patterns, shared by agent grants, policies and delegation narrowing.

A scope is a token such as `charges:read` (letters, digits and `._-/:`). A pattern is a scope,
a prefix wildcard ending in `:*` (`charges:*` matches `charges:read` and `charges:refunds:write`),
or `*` (anything). A request's `scope` is one or more scopes separated by spaces.
"""

import re

MAX_SCOPES_PER_REQUEST = 20
_SCOPE_TOKEN = r"[A-Za-z0-9][A-Za-z0-9._/-]*(?::[A-Za-z0-9._/-]+)*"  # noqa: S105 - a pattern
SCOPE = re.compile(rf"^{_SCOPE_TOKEN}$")
MAX_SCOPE_LENGTH = 200
# A request's `scope`, as the OpenAPI schema states it: 1 to 20 scopes separated (and maybe surrounded) by
# spaces, 1000 characters in all (records and audit rows store the scopes joined, in 1000). Spaces only:
# "whitespace" means different characters to Python, JSON Schema validators and clients. A requested scope
# has no length limit of its own (a pattern cannot bound the items of a list): only stored ones do.
REQUESTED_SCOPES_PATTERN = rf"^ *{_SCOPE_TOKEN}(?: +{_SCOPE_TOKEN}){{0,{MAX_SCOPES_PER_REQUEST - 1}}} *$"
MAX_REQUESTED_SCOPES_LENGTH = 1000
# A scope pattern as grants, catalogues and policy rules take it: a scope, `prefix:*`, or `*`.
SCOPE_PATTERN_PATTERN = rf"^(?:\*|{_SCOPE_TOKEN}(?::\*)?)$"
EXACT_PRECISION = 100


def parse_scopes(text: str) -> list[str]:
    """The distinct scopes of a space-separated request, in order; ValueError when malformed."""
    if not isinstance(text, str):
        raise ValueError("scope must be a string of space-separated scopes")
    if len(text) > MAX_REQUESTED_SCOPES_LENGTH:
        raise ValueError(f"scope must be at most {MAX_REQUESTED_SCOPES_LENGTH} characters")
    requested = [scope for scope in text.split(" ") if scope]
    if not requested:
        raise ValueError("scope must name at least one scope")
    if len(requested) > MAX_SCOPES_PER_REQUEST:  # counted as sent, as the schema's pattern counts them
        raise ValueError(f"at most {MAX_SCOPES_PER_REQUEST} scopes per request")
    for scope in requested:
        if not SCOPE.fullmatch(scope):
            raise ValueError(f"{scope[:50]!r} is not a valid scope")
    return list(dict.fromkeys(requested))


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
