from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "keyward.tenancy"
    label = "tenancy"
    verbose_name = "Tenancy (orgs and org scoping)"
