"""The hash chain's arithmetic: the canonical form of a row and its hash.

`hash = sha256(prev_hash || canonical row)`, where the canonical row is every stored field except
`hash` (and the surrogate `id`) as compact, sorted-key JSON with UTC timestamps at microsecond
precision. The export emits exactly these fields, so anyone can recompute the chain offline.
"""

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from keyward.audit.models import AuditEvent

# Every hashed field, as named in the canonical row and in exports ("org" is the org id or null).
CANONICAL_FIELDS = (
    "seq",
    "org",
    "created_at",
    "event_type",
    "outcome",
    "reason_code",
    "actor_type",
    "actor_id",
    "actor_name",
    "end_user",
    "agent",
    "delegation_chain",
    "provider",
    "scope",
    "environment",
    "credential_jti",
    "request_id",
    "ip",
    "detail",
    "prev_hash",
)


def format_timestamp(value: datetime) -> str:
    """One fixed text form for time, independent of database and settings."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_fields(event: AuditEvent) -> dict[str, Any]:
    """The hashed fields of a row, JSON-ready (also the shape of an exported row, minus `hash`)."""
    fields: dict[str, Any] = {name: getattr(event, name) for name in CANONICAL_FIELDS if name != "org"}
    fields["org"] = event.org_id
    fields["created_at"] = format_timestamp(event.created_at)
    return fields


def canonical_bytes(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def row_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical_bytes(fields)).hexdigest()


def compute_hash(event: AuditEvent) -> str:
    """The hash a row must carry, given its stored fields (its own `prev_hash` included)."""
    return row_hash(event.prev_hash, canonical_fields(event))
