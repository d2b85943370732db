from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "keyward.approvals"
    label = "approvals"
    verbose_name = "Human-in-the-loop approvals"
