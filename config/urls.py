"""URL map: admin, signed webhooks, read API and health (CONTRACT §2–§6)."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("webhooks/", include("events.urls")),
]
