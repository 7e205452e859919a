from django.apps import AppConfig


class UsageConfig(AppConfig):
    """Derived behaviour state: usage profiles (metrics), cohorts and lifecycle stages, with their history."""

    name = "usage"
    verbose_name = "Usage, cohorts and stages"
