"""`Idempotency-Key`: a retry of the same request by the same caller gets the same credential.

The first request claims the key (a row, committed at once, unique per org + agent + key); when it
issues, the 200 answer is stored sealed (it holds the credential) with the issuance. Any other
outcome releases the key, so a retry runs again. A replay must match the first request exactly.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from broker.models import IdempotencyRecord
from broker.refusals import IdempotencyConflict
from keyward.agents.models import Agent
from keyward.tenancy.models import Org

CLAIM_LIFETIME = timedelta(minutes=5)


@dataclass(frozen=True)
class Replay:
    status_code: int
    body: dict


def request_hash(**identity) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def claim(org: Org, agent: Agent, key: str, digest: str) -> IdempotencyRecord | Replay:
    """Claim `key` for this request, or return the stored answer of the request that already did."""
    now = timezone.now()
    IdempotencyRecord.objects.filter(org=org, agent=agent, key=key, expires_at__lte=now).delete()
    try:
        with transaction.atomic():
            return IdempotencyRecord.objects.create(
                org=org, agent=agent, key=key, request_hash=digest, expires_at=now + CLAIM_LIFETIME
            )
    except IntegrityError:
        pass
    existing = IdempotencyRecord.objects.select_related("org").filter(org=org, agent=agent, key=key).first()
    if existing is None or existing.request_hash != digest:
        raise IdempotencyConflict("This Idempotency-Key was used for a different request.")
    if existing.status_code is None:
        raise IdempotencyConflict("A request with this Idempotency-Key is still being processed; retry shortly.")
    return Replay(existing.status_code, json.loads(existing.unseal_secret()))


def complete(record: IdempotencyRecord, body: dict, expires_at: datetime) -> None:
    """Store the 200 answer (sealed) for replays until the credential itself expires."""
    record.status_code = 200
    record.expires_at = expires_at
    record.seal_secret(json.dumps(body, default=str).encode())
    record.save(update_fields=["status_code", "expires_at", "ciphertext", "wrapped_key", "kek_id"])


def release(record: IdempotencyRecord) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk, status_code__isnull=True).delete()
