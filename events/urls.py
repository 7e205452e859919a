from django.urls import path

from events import views

urlpatterns = [
    path("provisioning/", views.provisioning_webhook, name="webhook-provisioning"),
    path("provisioning/batch/", views.provisioning_batch_webhook, name="webhook-provisioning-batch"),
    path("marketo/", views.marketo_webhook, name="webhook-marketo"),
]
