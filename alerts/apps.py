from django.apps import AppConfig


class AlertsConfig(AppConfig):
    """Alert rules, routing, delivery by email and Slack, rep pages."""

    name = "alerts"
