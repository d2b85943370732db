from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "keyward.core"
    label = "core"
    verbose_name = "keyward core (request ids, errors, health)"
