from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Health, metrics, error tracking and privacy requests."""

    name = "ops"
