from django.apps import AppConfig


class SyncConfig(AppConfig):
    """Salesforce outbox and client, Stripe reads, the local Salesforce emulator."""

    name = "sync"
