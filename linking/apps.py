from django.apps import AppConfig


class LinkingConfig(AppConfig):
    """Lead/account/contact matching, lead conversion and the review queue."""

    name = "linking"
    verbose_name = "Linking and review"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from workspaces.models import ReviewItem

        auditlog.register(ReviewItem, m2m_fields={"events"})
