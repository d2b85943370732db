from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "keyward.audit"
    label = "audit"
    verbose_name = "Audit log (hash chain, export, verify)"

    def ready(self) -> None:
        from keyward.audit.receivers import record_key_operation, record_object_not_found
        from keyward.crypto.signals import key_operation
        from keyward.tenancy.signals import object_not_found

        key_operation.connect(record_key_operation, dispatch_uid="keyward.audit.key_operation")
        object_not_found.connect(record_object_not_found, dispatch_uid="keyward.audit.object_not_found")
