"""The one audit writer. Every feature records its events through `record_event`.

Appends to a chain are serialised by a row lock on the chain head, so two writers never take the
same sequence number and the chain never forks. The row is written in the caller's transaction:
the action and its audit row commit together, and if the row cannot be written the caller's
transaction fails with it (fail closed, `503 audit_unavailable`).
"""

import ipaddress
import logging
import re
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from django.db import DatabaseError, transaction
from django.dispatch import Signal
from django.http import HttpRequest
from django.utils import timezone

from keyward.audit.chain import compute_hash
from keyward.audit.models import ActorType, AuditChain, AuditEvent, Outcome, chain_key
from keyward.core.exceptions import ServiceUnavailable
from keyward.core.middleware import current_request_id
from keyward.core.net import client_ip
from keyward.tenancy.models import Org

logger = logging.getLogger(__name__)

EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+$"
_EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN)
_TEXT_FACTS = ("end_user", "agent", "provider", "scope", "environment", "credential_jti")
_JSON_FACTS = ("delegation_chain", "detail")
# A detail key with a word ending in one of these is refused (api_key, accessToken, passcode...):
# audit rows never hold a secret. Over-eager by design; rename the key if it refuses a harmless one.
SECRET_WORDS = ("password", "passwd", "passphrase", "secret", "token", "key", "code", "assertion", "otp", "private")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


# Sent once the transaction holding a new row has committed (never for a row that rolled back),
# with `chain` (the chain key), `org_id` and `seq`. SIEM streaming listens to wake a delivery.
# Receivers run after the caller's commit, on its thread: they must be quick and must not raise.
audit_event_recorded = Signal()


class AuditUnavailable(ServiceUnavailable):
    """The audit row could not be written, so the action it records did not happen (503, `Retry-After`)."""

    code = "audit_unavailable"


class AccountLike(Protocol):
    pk: Any
    email: str


@dataclass(frozen=True)
class Actor:
    """Who did it, copied as text so the row survives the account's or agent's deletion."""

    type: str
    id: str = ""
    name: str = ""

    @classmethod
    def account(cls, account: AccountLike) -> "Actor":
        return cls(ActorType.ACCOUNT, str(account.pk), account.email)

    @classmethod
    def agent(cls, agent_id: Any, name: str) -> "Actor":
        return cls(ActorType.AGENT, str(agent_id), name)

    @classmethod
    def system(cls, name: str = "keyward") -> "Actor":
        return cls(ActorType.SYSTEM, "", name)

    @classmethod
    def anonymous(cls, name: str = "", account_id: Any = None) -> "Actor":
        """An unauthenticated caller, e.g. a failed sign-in, named by the identity it claimed."""
        return cls(ActorType.ANONYMOUS, "" if account_id is None else str(account_id), name)


@dataclass(frozen=True)
class AuditContext:
    """Request facts an audit row carries, taken at the edge so services need no request object."""

    request_id: str = ""
    ip: str = ""

    @classmethod
    def from_request(cls, request: HttpRequest | None) -> "AuditContext":
        if request is None:
            return cls.current()
        return cls(request_id=getattr(request, "request_id", "") or "", ip=client_ip(request))

    @classmethod
    def current(cls, ip: str | None = None) -> "AuditContext":
        """Outside a view: the request id the middleware put in context (if any) and a known IP."""
        request_id = current_request_id()
        return cls(request_id="" if request_id == "-" else request_id, ip=ip or "")


def lock_chain_head(key: str) -> AuditChain:
    """Lock (creating on first use) a chain's head row. Call inside a transaction."""
    heads = AuditChain.objects.select_for_update()
    head = heads.filter(key=key).first()
    if head is None:
        # ON CONFLICT DO NOTHING: a concurrent first writer may create it; either way we then lock it.
        AuditChain.objects.bulk_create([AuditChain(key=key)], ignore_conflicts=True)
        head = heads.get(key=key)
    return head


def record_event(
    *,
    org: Org | None,
    event_type: str,
    outcome: str,
    reason_code: str = "",
    actor: Actor | AccountLike | None = None,
    request: HttpRequest | None = None,
    context: AuditContext | None = None,
    **facts: Any,
) -> AuditEvent:
    """Append one event to the org's chain (the platform chain when `org` is None).

    `facts` are the row's optional fields: end_user, agent, delegation_chain, provider, scope,
    environment, credential_jti and `detail` (a small dict of non-secret extra facts).
    Raises `AuditUnavailable` (503) when the row cannot be written; the caller's transaction,
    and so the action, then fails too.
    """
    event = _build_event(org, event_type, outcome, reason_code, actor, context or AuditContext.from_request(request))
    for name, value in _clean_facts(facts).items():
        setattr(event, name, value)
    key = chain_key(org)
    try:
        with transaction.atomic():
            head = lock_chain_head(key)
            event.seq = head.last_seq + 1
            event.prev_hash = head.last_hash
            event.created_at = timezone.now()
            event.hash = compute_hash(event)
            event.save(force_insert=True)
            head.last_seq, head.last_hash = event.seq, event.hash
            head.save(update_fields=["last_seq", "last_hash"])
    except DatabaseError as exc:
        logger.exception("audit write failed: chain=%s event=%s", key, event_type)
        raise AuditUnavailable("The audit log is unavailable, so the action was not performed.") from exc
    transaction.on_commit(partial(_announce, key, event.org_id, event.seq), robust=True)
    return event


class _ProbeRolledBack(Exception):
    pass


def probe(org: Org | None) -> None:
    """Raise AuditUnavailable unless a row can be appended to the org's chain right now.

    For actions that cannot be undone once done (calling a provider that mints a real token): the
    row is written exactly as `record_event` would write it, under the chain lock, then rolled back.
    It proves the path works at this moment; the caller still records its real row afterwards.
    """
    event = _build_event(org, "audit.probe", Outcome.SUCCESS, "", Actor.system(), AuditContext.current())
    try:
        with transaction.atomic():
            head = lock_chain_head(chain_key(org))
            event.seq, event.prev_hash, event.created_at = head.last_seq + 1, head.last_hash, timezone.now()
            event.hash = compute_hash(event)
            event.save(force_insert=True)
            raise _ProbeRolledBack
    except _ProbeRolledBack:
        return
    except DatabaseError as exc:
        logger.exception("audit probe failed: chain=%s", chain_key(org))
        raise AuditUnavailable("The audit log is unavailable, so the action was not performed.") from exc


def _announce(chain: str, org_id: int | None, seq: int) -> None:
    audit_event_recorded.send(sender=AuditEvent, chain=chain, org_id=org_id, seq=seq)


def record_committed_event(**kwargs: Any) -> AuditEvent:
    """`record_event` in its own transaction, for refusals that raise right after recording.

    Durable: it refuses to run inside another transaction, which could roll the row back.
    """
    with transaction.atomic(durable=True):
        return record_event(**kwargs)


def _build_event(
    org: Org | None, event_type: str, outcome: str, reason_code: str, actor, context: AuditContext
) -> AuditEvent:
    if not _EVENT_TYPE.match(event_type) or len(event_type) > 64:
        raise ValueError(f"audit event type must be a dotted lowercase name, got {event_type!r}")
    if outcome not in Outcome.values:
        raise ValueError(f"audit outcome must be one of {Outcome.values}, got {outcome!r}")
    if actor is None:
        actor = Actor.system()
    elif not isinstance(actor, Actor):
        actor = Actor.account(actor)
    if actor.type not in ActorType.values:
        raise ValueError(f"audit actor type must be one of {ActorType.values}, got {actor.type!r}")
    return AuditEvent(
        org=org,
        event_type=event_type,
        outcome=outcome,
        reason_code=_text("reason_code", reason_code),
        actor_type=actor.type,
        actor_id=_text("actor_id", actor.id),
        actor_name=_text("actor_name", actor.name),
        request_id=_text("request_id", context.request_id),
        ip=_valid_ip(context.ip),
    )


def _clean_facts(facts: dict[str, Any]) -> dict[str, Any]:
    unknown = set(facts) - set(_TEXT_FACTS) - set(_JSON_FACTS)
    if unknown:
        raise TypeError(f"unknown audit facts: {', '.join(sorted(unknown))}")
    cleaned: dict[str, Any] = {}
    for name in _TEXT_FACTS:
        if name in facts:
            cleaned[name] = _text(name, facts[name] or "")
    if "delegation_chain" in facts:
        chain = facts["delegation_chain"] or []
        if not isinstance(chain, list | tuple):
            raise TypeError("delegation_chain must be a list")
        cleaned["delegation_chain"] = _json_value(list(chain), "delegation_chain")
    if "detail" in facts:
        detail = facts["detail"] or {}
        if not isinstance(detail, dict):
            raise TypeError("detail must be a dict")
        cleaned["detail"] = _json_value(detail, "detail")
    return cleaned


def _text(field: str, value: Any) -> str:
    """Text that every database stores as given: no NUL, no longer than the column."""
    if not isinstance(value, str):
        raise TypeError(f"audit field {field} must be text, got {type(value).__name__}")
    limit = AuditEvent._meta.get_field(field).max_length
    return value.replace("\x00", "\ufffd")[:limit]


def _valid_ip(value: str) -> str:
    """Only a parseable address is stored; a forged header value must not make the write fail."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return ""


def _names_a_secret(key: str) -> bool:
    words = _NON_ALNUM.split(_CAMEL_BOUNDARY.sub("_", key).lower())
    return any(word.endswith(SECRET_WORDS) for word in words if word)


def _json_value(value: Any, path: str) -> Any:
    """A copy limited to str/int/bool/None, lists and string-keyed dicts (exact round trip, stable hash)."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list | tuple):
        return [_json_value(item, f"{path}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, dict):
        cleaned = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"audit {path} keys must be text")
            if _names_a_secret(key):
                raise ValueError(f"audit {path}.{key}: a key that names a secret is refused")
            cleaned[key.replace("\x00", "\ufffd")] = _json_value(item, f"{path}.{key}")
        return cleaned
    raise TypeError(f"audit {path} holds a {type(value).__name__}; use text, integers, booleans, lists, dicts")
