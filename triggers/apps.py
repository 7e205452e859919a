from django.apps import AppConfig


class TriggersConfig(AppConfig):
    """The trigger engine: triggers as data, their firings (with the why) and timers (DESIGN.md)."""

    name = "triggers"
    verbose_name = "Triggers"
