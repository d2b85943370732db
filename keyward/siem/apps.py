from django.apps import AppConfig


class SiemConfig(AppConfig):
    name = "keyward.siem"
    label = "siem"
    verbose_name = "SIEM streaming (audit events to the customer's SIEM)"

    def ready(self) -> None:
        from keyward.audit.writer import audit_event_recorded
        from keyward.siem.delivery import on_audit_event_recorded

        audit_event_recorded.connect(on_audit_event_recorded, dispatch_uid="keyward.siem.wake")
