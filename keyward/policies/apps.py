from django.apps import AppConfig


class PoliciesConfig(AppConfig):
    name = "keyward.policies"
    label = "policies"
    verbose_name = "Policies and the policy engine"
