from django.apps import AppConfig


class ApiConfig(AppConfig):
    """The read API (/api/): token and session auth, role scoping, one view module per resource."""

    name = "api"
    verbose_name = "Read API"
