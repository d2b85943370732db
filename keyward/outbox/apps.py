from django.apps import AppConfig


class OutboxConfig(AppConfig):
    name = "keyward.outbox"
    label = "outbox"
    verbose_name = "Outbox (durable delivery of notifications)"
