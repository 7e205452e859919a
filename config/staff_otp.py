"""A second factor for staff powers everywhere, not only on /admin/ (STAFF_TOTP_REQUIRED).

Staff powers: staff and superusers (the admin, /ops/, /metrics) and members of "Lifecycle admins" (admin
visibility on the rep pages and the read API) — `alerts.roles.user_has_staff_powers`. With the setting
on, a session of such a user that no TOTP device has verified counts as anonymous on every page: the
admin, /ops/, /metrics, the API and its docs, the rep pages. Each sends them to a login that asks for a
code (the admin's, or the rep login below); the API answers 401. A token cannot pass a second factor, so
the read API refuses staff tokens while the setting is on (api/workspaces.py); other systems read
through an API service account (`manage.py api_token create NAME --service`).
"""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse
from django_otp import devices_for_user
from django_otp.forms import OTPAuthenticationFormMixin

from alerts.roles import user_has_staff_powers


def needs_second_factor(user: AbstractBaseUser) -> bool:
    """True when STAFF_TOTP_REQUIRED is on, the user holds staff powers and no device has verified them."""
    if not (settings.STAFF_TOTP_REQUIRED and user.is_authenticated):
        return False
    is_verified = getattr(user, "is_verified", None)
    return not (is_verified and is_verified()) and user_has_staff_powers(user)


def unverified_anonymous() -> AnonymousUser:
    """An anonymous user that answers django-otp's questions (the admin asks `is_verified()`)."""
    user = AnonymousUser()
    user.otp_device = None
    user.is_verified = lambda: False
    return user


class StaffVerificationMiddleware:
    """After django-otp's middleware: an unverified session with staff powers is anonymous (see above)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Only sessions can hold staff powers here (tokens are checked by the API); no cookie, no lookup.
        cookie = settings.SESSION_COOKIE_NAME in request.COOKIES
        if settings.STAFF_TOTP_REQUIRED and cookie and needs_second_factor(request.user):
            request.user = unverified_anonymous()
        return self.get_response(request)


class LoginForm(OTPAuthenticationFormMixin, AuthenticationForm):
    """The rep login: a password, and with STAFF_TOTP_REQUIRED on a code from the user's TOTP device for
    users with staff powers (reps need none). A user with one device need not pick it."""

    otp_device = forms.CharField(required=False, widget=forms.Select)
    otp_token = forms.CharField(required=False, label="Authenticator code")
    otp_challenge = forms.CharField(required=False)  # read by the mixin; TOTP devices have no challenge

    otp_error_messages = {
        **OTPAuthenticationFormMixin.otp_error_messages,
        "token_required": "Staff accounts need the code from their authenticator app.",
        "device_required": "Pick the device the code comes from (or ask an admin for one: manage.py totp_device).",
    }

    def clean(self) -> dict:
        cleaned = super().clean()
        user = self.get_user()
        if user is not None and settings.STAFF_TOTP_REQUIRED and user_has_staff_powers(user):
            self.clean_otp(user)
        return cleaned

    def _chosen_device(self, user: AbstractBaseUser):
        device = super()._chosen_device(user)
        if device is None:
            devices = list(devices_for_user(user))
            device = devices[0] if len(devices) == 1 else None
        return device


class EngineLoginView(LoginView):
    """/accounts/login/: the rep pages' login, asking staff for their code when the setting is on."""

    form_class = LoginForm
    template_name = "reps/login.html"
    next_page = "reps:dashboard"
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs) -> dict:
        return {**super().get_context_data(**kwargs), "totp_required": settings.STAFF_TOTP_REQUIRED}
