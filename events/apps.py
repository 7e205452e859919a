from django.apps import AppConfig


class EventsConfig(AppConfig):
    """The event cache, the signed webhooks and the processing pipeline."""

    name = "events"
    verbose_name = "Events"

    def ready(self) -> None:
        from events import audit  # noqa: F401  (registers Event with auditlog)
