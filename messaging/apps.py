from django.apps import AppConfig


class MessagingConfig(AppConfig):
    """The channel registry: one transport class per kind of outbound message (email, Slack, ...)."""

    name = "messaging"
    verbose_name = "Messaging"

    def ready(self) -> None:
        from messaging import email, slack  # noqa: F401  (the built-in transports register themselves)
