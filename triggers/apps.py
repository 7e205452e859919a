from django.apps import AppConfig


class TriggersConfig(AppConfig):
    """Usage rollups now; cohorts, trigger rules and experiments read them later (DESIGN.md)."""

    name = "triggers"
    verbose_name = "Usage and triggers"
