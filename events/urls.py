from django.urls import path

from events import views

urlpatterns = [
    path("provisioning/", views.provisioning_webhook, name="webhook-provisioning"),
    path("marketo/", views.marketo_webhook, name="webhook-marketo"),
]
