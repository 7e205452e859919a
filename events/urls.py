from django.urls import path

from events import views

urlpatterns = [
    path("provisioning/", views.provisioning_webhook, name="webhook-provisioning"),
]
