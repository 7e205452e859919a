from django.apps import AppConfig


class TriggersConfig(AppConfig):
    """The trigger engine: triggers as data, their firings (with the why) and timers (DESIGN.md)."""

    name = "triggers"
    verbose_name = "Triggers"

    def ready(self) -> None:
        from triggers import channels, checks  # noqa: F401 - the salesforce_task channel; the system checks
        from triggers.definitions import triggers_section_register

        triggers_section_register()  # the definitions file's "triggers" section (usage cannot import this app)

        from triggers.tasks import usage_batch_evaluate
        from usage.rollups import after_batch_register

        after_batch_register(usage_batch_evaluate)  # rolled-up usage events and behaviour changes reach the engine
