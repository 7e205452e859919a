from django.urls import path

from billing import webhook

urlpatterns = [
    path("stripe/", webhook.stripe_webhook, name="webhook-stripe"),
]
