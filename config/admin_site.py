"""The admin site: Django's own, plus a TOTP step for staff when STAFF_TOTP_REQUIRED is on.

With the setting on, the login page asks for a code from the user's TOTP device (django-otp) and
only a session verified by one gets in. Devices are managed in the admin ("TOTP devices", with a QR
code) or made with `manage.py totp_device USERNAME`, which prints the otpauth:// address for the
user's authenticator app. The setting is read per request. The other surfaces with staff powers (/ops/,
/metrics, the API, the rep pages) hold the same line through config/staff_otp.py.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.admin import AdminSite
from django.http import HttpRequest
from django_otp.admin import OTPAdminAuthenticationForm, OTPAdminSite


class EngineAdminSite(AdminSite):
    site_header = "Lifecycle Engine"
    site_title = "Lifecycle Engine admin"

    @property
    def login_form(self):  # type: ignore[override]
        return OTPAdminAuthenticationForm if settings.STAFF_TOTP_REQUIRED else None

    @property
    def login_template(self):  # type: ignore[override]
        return OTPAdminSite.login_template if settings.STAFF_TOTP_REQUIRED else None

    def has_permission(self, request: HttpRequest) -> bool:
        if not super().has_permission(request):
            return False
        return not settings.STAFF_TOTP_REQUIRED or request.user.is_verified()
