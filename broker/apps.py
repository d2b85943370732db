from django.apps import AppConfig


class BrokerConfig(AppConfig):
    name = "broker"
    verbose_name = "Broker (agent-facing credential API)"

    def ready(self) -> None:
        from broker import receivers, schema  # noqa: F401 - connects receivers; registers the OpenAPI auth extension
