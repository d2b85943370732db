from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "keyward.audit"
    label = "audit"
    verbose_name = "Audit log (hash chain, export, verify)"

    def ready(self) -> None:
        from keyward.audit.receivers import record_key_operation
        from keyward.crypto.signals import key_operation

        key_operation.connect(record_key_operation, dispatch_uid="keyward.audit.key_operation")
