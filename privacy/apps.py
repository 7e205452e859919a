from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PrivacyConfig(AppConfig):
    """Roles, retention, data requests (export, erasure) and erasure tombstones (docs/privacy.md)."""

    name = "privacy"
    verbose_name = "Privacy"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from events.intake import intake_filter_register
        from privacy import guards  # noqa: F401  (audit entries are deletable by nobody)
        from privacy.suppression import events_suppress

        # Events naming an erased person are stored suppressed and scrubbed (the inbox cannot import us).
        intake_filter_register("privacy.suppression", events_suppress)
        from privacy.audience import user_unless_erased
        from triggers.audience import audience_register

        audience_register("user", user_unless_erased)  # no trigger message to an erased person's placeholder
        from privacy.roles import groups_sync_after_migrate

        post_migrate.connect(groups_sync_after_migrate, sender=self, dispatch_uid="privacy.groups_sync")
