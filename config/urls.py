"""URL map: admin, signed webhooks, read API, rep pages and health (CONTRACT §2–§6)."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.urls import include, path, reverse_lazy
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from alerts import views as alert_views
from alerts.api import AlertListView
from config.staff_otp import EngineLoginView
from events.api import EventListView
from ops.views import dashboard, healthz, metrics
from usage.api import CohortListView, WorkspaceProfileView
from workspaces.api import CanReadApi, WorkspaceDetailView, WorkspaceListView

api_urlpatterns = [
    path("workspaces/", WorkspaceListView.as_view(), name="api-workspace-list"),
    path("workspaces/<str:workspace_id>/", WorkspaceDetailView.as_view(), name="api-workspace-detail"),
    path("workspaces/<str:workspace_id>/profile/", WorkspaceProfileView.as_view(), name="api-workspace-profile"),
    path("cohorts/", CohortListView.as_view(), name="api-cohort-list"),
    path("events/", EventListView.as_view(), name="api-event-list"),
    path("alerts/", AlertListView.as_view(), name="api-alert-list"),
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

urlpatterns = [
    # `/`: the rep pages or the admin for a signed-in user, the login page for anyone else.
    path("", alert_views.home, name="home"),
    path("admin/", admin.site.urls),
    path("webhooks/", include("events.urls")),
    path("api/", include(api_urlpatterns)),
    path("reps/", include("alerts.urls")),
    # The rep pages' own login (the admin's turns away users who are not staff); it asks staff for their
    # TOTP code when STAFF_TOTP_REQUIRED is on (config/staff_otp.py).
    path("accounts/login/", EngineLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="login"), name="logout"),
    # Exactly "/healthz": settings.SECURE_REDIRECT_EXEMPT matches it, and it needs no trailing slash.
    path("healthz", healthz, name="healthz"),
    path("ops/", dashboard, name="ops"),
    # Not public: a bearer token (METRICS_TOKEN) or an admin login (ops/views.py).
    path("metrics", metrics, name="metrics"),
]
