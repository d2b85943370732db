from django.apps import AppConfig


class IdpConfig(AppConfig):
    name = "keyward.idp"
    label = "idp"
    verbose_name = "Identity provider connectors"
