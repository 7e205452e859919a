"""`/unsubscribe/<token>/`: the marketing-email unsubscribe page (messaging/unsubscribe.py), no login."""

from django.urls import path

from messaging.views import unsubscribe

urlpatterns = [path("<str:token>/", unsubscribe, name="unsubscribe")]
