"""The admin site: Django's own, plus a TOTP step for staff when STAFF_TOTP_REQUIRED is on.

With the setting on, the login page asks for a code from the user's TOTP device (django-otp) and
only a session verified by one gets in. Devices are managed in the admin ("TOTP devices", with a QR
code) or made with `manage.py totp_device USERNAME`, which prints the otpauth:// address for the
user's authenticator app. The setting is read per request. The other surfaces with staff powers (/ops/,
/metrics, the API, the rep pages) hold the same line through config/staff_otp.py.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.admin import AdminSite
from django.http import HttpRequest
from django_otp.admin import OTPAdminAuthenticationForm, OTPAdminSite

#: The index and the navigation list the apps in this order: the records admins work in first, then
#: the plumbing. Each app's models follow its list; anything not named comes after, alphabetically,
#: so nothing registered is ever left out.
APP_ORDER: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("events", ("Event", "WebhookBatch")),
    ("workspaces", ("Workspace", "ReviewItem", "Account", "Lead", "Contact", "WorkspaceLock")),
    ("sync", ("OutboxItem", "SyncControl")),
    ("alerts", ("Alert", "Delivery", "Rep", "TerritoryRule", "AlertRule")),
    ("usage", ("Cohort", "Stage", "Profile", "CohortMembership", "StagePeriod", "SupportTicket", "PlanLimitDaily")),
    ("triggers", ()),
    ("failures", ("ErrorKind", "Heartbeat")),
    ("ops", ()),
    ("privacy", ("DataRequest", "Tombstone")),
    ("auth", ("User", "Group")),
    ("authtoken", ("TokenProxy",)),
    ("otp_totp", ("TOTPDevice",)),
    ("axes", ("AccessAttempt", "AccessFailureLog", "AccessLog")),
    ("django_q", ("OrmQ", "Failure", "Success", "Schedule")),
    ("auditlog", ("LogEntry",)),
)


def _rank(order: list[str] | tuple[str, ...], key: str, name: str) -> tuple[int, str]:
    return (order.index(key) if key in order else len(order), name.lower())


class EngineAdminSite(AdminSite):
    site_header = "Lifecycle Engine"
    site_title = "Lifecycle Engine admin"

    @property
    def login_form(self):  # type: ignore[override]
        return OTPAdminAuthenticationForm if settings.STAFF_TOTP_REQUIRED else None

    @property
    def login_template(self):  # type: ignore[override]
        return OTPAdminSite.login_template if settings.STAFF_TOTP_REQUIRED else None

    def each_context(self, request: HttpRequest) -> dict:
        """The "View site" link leads to `/`, and so to the rep pages, for those who may use them; staff with
        no other pages get no such link (`/` would only bring them back here)."""
        from alerts.selectors import user_may_use_rep_pages  # the admin site is built before the apps' models

        context = super().each_context(request)
        context["site_url"] = "/" if user_may_use_rep_pages(request.user) else None
        return context

    def has_permission(self, request: HttpRequest) -> bool:
        if not super().has_permission(request):
            return False
        return not settings.STAFF_TOTP_REQUIRED or request.user.is_verified()

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
        """Apps and their models in APP_ORDER (Django sorts both alphabetically, which put Axes, OTP and the
        task queue above the events and the review queue)."""
        apps = list(self._build_app_dict(request, app_label).values())
        labels = [label for label, _ in APP_ORDER]
        apps.sort(key=lambda app: _rank(labels, app["app_label"], app["name"]))
        models = dict(APP_ORDER)
        for app in apps:
            order = models.get(app["app_label"], ())
            app["models"].sort(key=lambda model: _rank(order, model["object_name"], model["name"]))
        return apps
