"""The read API's addresses (CONTRACT §6): one view module per resource, the schema and its docs."""

from django.contrib.auth.decorators import login_required
from django.urls import path, reverse_lazy
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from api.alerts import AlertListView
from api.events import EventListView
from api.firings import FiringListView
from api.usage import CohortListView, WorkspaceProfileView
from api.workspaces import CanReadApi, WorkspaceDetailView, WorkspaceListView

urlpatterns = [
    path("workspaces/", WorkspaceListView.as_view(), name="api-workspace-list"),
    path("workspaces/<str:workspace_id>/", WorkspaceDetailView.as_view(), name="api-workspace-detail"),
    path("workspaces/<str:workspace_id>/profile/", WorkspaceProfileView.as_view(), name="api-workspace-profile"),
    path("cohorts/", CohortListView.as_view(), name="api-cohort-list"),
    path("events/", EventListView.as_view(), name="api-event-list"),
    path("alerts/", AlertListView.as_view(), name="api-alert-list"),
    path("firings/", FiringListView.as_view(), name="api-firing-list"),
    # The schema and the docs need a login or a token like everything else. Swagger UI's own script is
    # served as a file (the split view), so the docs need no inline script (config/security.py).
    path("schema/", SpectacularAPIView.as_view(permission_classes=[CanReadApi]), name="api-schema"),
    path(
        "docs/",
        login_required(
            SpectacularSwaggerSplitView.as_view(url_name="api-schema", permission_classes=[CanReadApi]),
            login_url=reverse_lazy("login"),
        ),
        name="api-docs",
    ),
]
