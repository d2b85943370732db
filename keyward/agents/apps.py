from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "keyward.agents"
    label = "agents"
    verbose_name = "Agents (identities, grants, attestation)"
