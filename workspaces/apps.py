from django.apps import AppConfig


class WorkspacesConfig(AppConfig):
    """The core: workspaces, leads, accounts, contacts and the lifecycle fold."""

    name = "workspaces"
    verbose_name = "Workspaces and CRM records"

    def ready(self) -> None:
        from workspaces import audit  # noqa: F401  (registers models with auditlog)
