from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "keyward.accounts"
    label = "accounts"
    verbose_name = "Accounts, sessions and roles"

    def ready(self) -> None:
        from keyward.accounts import schema  # noqa: F401 - registers the OpenAPI auth extension
