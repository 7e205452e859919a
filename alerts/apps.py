from django.apps import AppConfig


class AlertsConfig(AppConfig):
    """Alert rules, routing, delivery by email and Slack, rep pages."""

    name = "alerts"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from alerts import checks  # noqa: F401 - registers the system checks
        from alerts.services import alert_from_notice
        from failures.notices import notice_sink_set

        # The low apps' notices (a dead letter, a paused sync, billing drift) become admin alerts.
        notice_sink_set(alert_from_notice)
        from alerts.models import Alert, AlertRule, Rep, TerritoryRule

        auditlog.register(Alert, exclude_fields=["context"])
        # Who gets what is configuration worth a history: rules, reps and territories.
        auditlog.register(AlertRule)
        auditlog.register(Rep)
        auditlog.register(TerritoryRule)
