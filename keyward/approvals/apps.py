from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "keyward.approvals"
    label = "approvals"
    verbose_name = "Human-in-the-loop approvals"

    def ready(self) -> None:
        from keyward.approvals import notifications  # noqa: F401 - registers the outbox handlers
