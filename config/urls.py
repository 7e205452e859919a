"""URL map: admin, signed webhooks, read API, rep pages and health (CONTRACT §2–§6)."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from alerts import views as alert_views
from config.staff_otp import EngineLoginView
from ops.views import dashboard, healthz, metrics

urlpatterns = [
    # `/`: the rep pages or the admin for a signed-in user, the login page for anyone else.
    path("", alert_views.home, name="home"),
    path("admin/", admin.site.urls),
    path("webhooks/", include("events.urls")),
    path("webhooks/", include("billing.urls")),
    path("api/", include("api.urls")),
    path("reps/", include("alerts.urls")),
    path("unsubscribe/", include("messaging.urls")),  # marketing email's unsubscribe link: no login, a signed token
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
