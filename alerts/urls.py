"""Rep pages, mounted at /reps/ (links in alert emails and Slack messages point here)."""

from django.urls import path

from alerts import settings_views, views

app_name = "reps"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("alerts/", views.alert_inbox, name="alerts"),
    path("alerts/<int:pk>/", views.alert_act, name="alert-act"),
    path("workspaces/", views.workspace_list, name="workspaces"),
    path("workspaces/<str:workspace_id>/", views.workspace_detail, name="workspace"),
    path("settings/", settings_views.rep_settings, name="settings"),
]
