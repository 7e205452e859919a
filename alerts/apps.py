from django.apps import AppConfig


class AlertsConfig(AppConfig):
    """Alert rules, routing, delivery by email and Slack, rep pages."""

    name = "alerts"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from alerts.models import Alert

        auditlog.register(Alert, exclude_fields=["context"])
