from django.urls import path

from events import stripe_webhook, views

urlpatterns = [
    path("provisioning/", views.provisioning_webhook, name="webhook-provisioning"),
    path("provisioning/batch/", views.provisioning_batch_webhook, name="webhook-provisioning-batch"),
    path("marketo/", views.marketo_webhook, name="webhook-marketo"),
    path("stripe/", stripe_webhook.stripe_webhook, name="webhook-stripe"),
]
