from django.apps import AppConfig


class FailuresConfig(AppConfig):
    """The ledger of errors (by kind) and heartbeats that every app writes and ops reads."""

    name = "failures"
    verbose_name = "Failures and heartbeats"
