from django.apps import AppConfig


class ProcessingConfig(AppConfig):
    """The per-workspace processing run: claiming, the lock, the fold applied, tasks, sweeper, replay."""

    name = "processing"
    verbose_name = "Processing"
