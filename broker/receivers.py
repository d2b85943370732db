"""The broker's answers to what the floors below announce (they cannot import the broker)."""

from django.dispatch import receiver

from broker import registry
from keyward.agents.signals import agent_revoked


@receiver(agent_revoked, dispatch_uid="broker.revoke_held_by_revoked_agent")
def revoke_held_by_revoked_agent(sender, *, agent, actor=None, audit_context=None, **kwargs) -> None:
    """A revoked agent keeps nothing: its live credentials and their delegated families are revoked."""
    registry.revoke_held_by(agent, actor=actor, audit_context=audit_context)
