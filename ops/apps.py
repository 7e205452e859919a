from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Health, metrics, error tracking and privacy requests."""

    name = "ops"

    def ready(self) -> None:
        from ops import health

        health.process_started()  # /healthz's start-up grace counts from here (HEALTH_STARTUP_GRACE_SECONDS)
