from django.apps import AppConfig
from django.db.models.signals import post_migrate


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
        self._rep_alerts_on_the_engine()
        from alerts.models import Alert, AlertRule, Rep, TerritoryRule

        auditlog.register(Alert, exclude_fields=["context"])
        # Who gets what is configuration worth a history: rules, reps and territories.
        auditlog.register(AlertRule)
        auditlog.register(Rep)
        auditlog.register(TerritoryRule)

    def _rep_alerts_on_the_engine(self) -> None:
        """The workspace rules are triggers (alerts/engine.py): their `when` kind, decided in this app's own
        pass after the processing commit; their `rep_alert` action, which routes itself; and the shipped
        triggers made again after a flush of the database (post_migrate, as permissions are)."""
        from alerts import engine
        from alerts.services import rep_alert_act
        from triggers.actions import action_handler_register
        from triggers.preview import preview_reader_register
        from triggers.when import when_register

        when_register(engine.KIND, engine.when_alert_rule, engine.when_alert_rule_errors, own_pass=True)
        preview_reader_register(engine.KIND, engine.alert_rule_preview)  # the admin's dry run
        action_handler_register(engine.CHANNEL, rep_alert_act, routes=True)
        post_migrate.connect(engine.rep_alert_triggers_ensure, sender=self, dispatch_uid="alerts.rep_alert_triggers")
