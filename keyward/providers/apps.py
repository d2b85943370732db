from django.apps import AppConfig


class ProvidersConfig(AppConfig):
    name = "keyward.providers"
    label = "providers"
    verbose_name = "Providers (the seed's secrets)"
