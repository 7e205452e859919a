"""Rep pages, mounted at /reps/ (links in alert emails and Slack messages point here)."""

from django.urls import path

from alerts import settings_views, views

app_name = "reps"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("alerts/", views.alert_inbox, name="alerts"),
    path("alerts/acknowledge/", views.alerts_acknowledge_view, name="alerts-acknowledge"),
    # One address per alert: GET is its page, POST an action on it (acknowledge, snooze, resolve, reopen).
    path("alerts/<int:pk>/", views.alert_detail, name="alert"),
    path("alerts/<int:pk>/", views.alert_detail, name="alert-act"),
    path("workspaces/", views.workspace_list, name="workspaces"),
    path("workspaces/<str:workspace_id>/", views.workspace_detail, name="workspace"),
    path("settings/", settings_views.rep_settings, name="settings"),
]
