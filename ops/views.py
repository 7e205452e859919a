"""Operational pages and endpoints: /healthz (public), /ops/ (admins), /metrics (scraper or admins)."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from ops.dashboard import ops_overview
from ops.health import health_report
from ops.metrics import metrics_page

DASHBOARD_PERMISSION = "ops.view_dashboard"


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """No login: load balancers and monitors call it. 503 tells them to take this instance out."""
    report = health_report()
    response = JsonResponse(report, status=200 if report["status"] == "ok" else 503)
    # health_report logs each change of state once; Django would log every 503 probe at ERROR besides.
    response._has_been_logged = True  # the mark django.utils.log.log_response skips
    return response


def may_see_ops(user) -> bool:
    return bool(user.is_active and user.is_staff and user.has_perm(DASHBOARD_PERMISSION))


@never_cache
@require_safe
@staff_member_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """Staff with `ops.view_dashboard` (Lifecycle admins, auditors, superusers); other staff get 403."""
    if not may_see_ops(request.user):
        raise PermissionDenied
    now = timezone.now()
    context = {
        **admin.site.each_context(request),
        "title": "Operations",
        "sections": ops_overview(now=now),
        "now": now,
        "window_minutes": settings.OPS_WINDOW_MINUTES,
    }
    return render(request, "ops/dashboard.html", context)


def _bearer_ok(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition. Not public: the METRICS_TOKEN bearer token or a login that may see /ops/.

    Without a token configured the endpoint does not exist for anyone else (404); with one, a
    missing or wrong token is 401.
    """
    if not (_bearer_ok(request) or may_see_ops(request.user)):
        if not settings.METRICS_TOKEN:
            return HttpResponse("Not found\n", status=404, content_type="text/plain")
        response = HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = metrics_page()
    return HttpResponse(body, content_type=content_type)
