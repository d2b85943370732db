from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "keyward.core"
    label = "core"
    verbose_name = "keyward core (request ids, errors, health, deploy checks)"

    def ready(self) -> None:
        from keyward.core import checks  # noqa: F401  (registers the deploy checks)
