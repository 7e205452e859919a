from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class ConfigAppConfig(AppConfig):
    """Holds the project-wide system checks (`config/checks.py`)."""

    name = "config"
    label = "config"
    verbose_name = "Configuration"

    def ready(self) -> None:
        from config import checks, security  # noqa: F401  (registers the checks and the login stamp)


class EngineAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with the engine's site: TOTP for staff when STAFF_TOTP_REQUIRED is on."""

    default = False  # named explicitly in INSTALLED_APPS; "config" keeps ConfigAppConfig

    default_site = "config.admin_site.EngineAdminSite"
