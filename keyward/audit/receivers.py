"""Audit rows for what lower floors announce (they cannot import the audit writer themselves)."""

from keyward.audit.models import Outcome
from keyward.audit.writer import Actor, record_event


def record_key_operation(sender, *, action: str, failed: bool, performed_by: str, detail: dict, **kwargs) -> None:
    """A signing-key or master-key operation, on the platform chain. Raising here fails the operation."""
    record_event(
        org=None,
        event_type=action,
        outcome=Outcome.FAILURE if failed else Outcome.SUCCESS,
        actor=Actor.system(performed_by),
        detail=detail,
    )
