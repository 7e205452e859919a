from django.apps import AppConfig


class MessagingConfig(AppConfig):
    """The channel registry: one transport class per kind of outbound message (email, Slack, in-app, support ticket)."""

    name = "messaging"
    verbose_name = "Messaging"

    def ready(self) -> None:
        from messaging import email, inapp, slack, zendesk  # noqa: F401  (the built-in transports register themselves)
