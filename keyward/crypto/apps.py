from django.apps import AppConfig


class CryptoConfig(AppConfig):
    name = "keyward.crypto"
    label = "crypto"
    verbose_name = "Crypto (envelope encryption, KMS, signing keys)"
