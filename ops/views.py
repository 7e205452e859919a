"""Operational pages and endpoints."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from ops.health import health_report


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """No login: load balancers and monitors call it. 503 tells them to take this instance out."""
    report = health_report()
    return JsonResponse(report, status=200 if report["status"] == "ok" else 503)
