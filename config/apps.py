from django.apps import AppConfig


class ConfigAppConfig(AppConfig):
    """Holds the project-wide system checks (`config/checks.py`)."""

    name = "config"
    label = "config"
    verbose_name = "Configuration"

    def ready(self) -> None:
        from config import checks  # noqa: F401  (registers the checks)
