"""Signed JSON webhooks (approval notifications, SIEM delivery).

Each POST carries `X-Keyward-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
Receivers recompute it over the raw body, compare in constant time, and refuse a `t` older than a
few minutes, so a captured request cannot be replayed later. `X-Keyward-Event-Id` is stable across
retries of the same message, for de-duplication.
"""

import hashlib
import hmac
import json
import time

import requests

from keyward.net.errors import OutboundBlocked, OutboundError
from keyward.net.outbound import outbound_session
from keyward.outbox.services import DeliveryError

SIGNATURE_HEADER = "X-Keyward-Signature"
EVENT_ID_HEADER = "X-Keyward-Event-Id"


def signature(secret: bytes, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def post_signed(url: str, payload: dict | list, *, secret: bytes, event_id: str) -> None:
    """POST `payload` as JSON, signed. 2xx returns; 429/5xx/network → retryable; other 4xx → parked."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(secret, body, int(time.time())),
        EVENT_ID_HEADER: event_id,
        "User-Agent": "keyward-webhook/1",
    }
    try:
        with outbound_session() as session:
            response = session.post(url, data=body, headers=headers)
    except OutboundBlocked as exc:
        raise DeliveryError(f"blocked:{exc.code}", retryable=False) from None
    except OutboundError as exc:
        raise DeliveryError(f"failed:{exc.code}") from None
    except requests.RequestException as exc:
        raise DeliveryError(f"unreachable:{type(exc).__name__}") from None
    if 200 <= response.status_code < 300:
        return
    retryable = response.status_code == 429 or response.status_code >= 500
    raise DeliveryError(f"http_{response.status_code}", retryable=retryable)
