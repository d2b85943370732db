from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "keyward.audit"
    label = "audit"
    verbose_name = "Audit log (hash chain, export, verify)"
