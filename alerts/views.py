"""Rep pages (/reps/): dashboard, alert inbox, workspace page. Views parse input and call services.

Anonymous visitors are sent to the login page; signed-in users who are neither a rep nor a Lifecycle
admin get 403. What a rep sees is decided by the selectors, never here: an alert or workspace outside
their set answers 404, the same as one that does not exist.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from alerts.forms import AlertActionForm, AlertFilterForm, WorkspaceFilterForm
from alerts.roles import user_is_alerts_admin
from alerts.selectors import (
    alerts_for_inbox,
    dashboard_for,
    salesforce_record_url,
    user_may_use_rep_pages,
    workspace_timeline,
    workspace_usage_count,
    workspaces_for_list,
    workspaces_visible_to,
)
from alerts.services import alert_acknowledge, alert_reopen, alert_resolve, alert_snooze, alerts_visible_to
from workspaces.models import Workspace

INBOX_LIMIT = 200

View = Callable[..., HttpResponse]


def rep_pages_required(view: View) -> View:
    """Login first (to the rep login page, not the admin's); then reps and admins only."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("login"))
        if not user_may_use_rep_pages(request.user):
            raise PermissionDenied("The rep pages are for reps and Lifecycle admins.")
        request.is_lifecycle_admin = user_is_alerts_admin(request.user)
        return view(request, *args, **kwargs)

    return wrapped


@require_GET
@rep_pages_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "reps/dashboard.html", {"nav": "dashboard", "board": dashboard_for(request.user)})


@require_GET
@rep_pages_required
def alert_inbox(request: HttpRequest) -> HttpResponse:
    form = AlertFilterForm(request.GET or None)
    filters = form.filters() if request.GET else {}
    alerts = alerts_for_inbox(request.user, **filters)
    context = {
        "nav": "alerts",
        "form": form,
        "alerts": alerts[:INBOX_LIMIT],
        "total": alerts.count(),
        "limit": INBOX_LIMIT,
        "snooze_form": AlertActionForm(),
        "here": request.get_full_path(),
    }
    return render(request, "reps/alerts.html", context)


@require_POST
@rep_pages_required
def alert_act(request: HttpRequest, pk: int) -> HttpResponse:
    alert = get_object_or_404(alerts_visible_to(request.user), pk=pk)
    form = AlertActionForm(request.POST)
    if not form.is_valid():
        errors = "; ".join(f"{name}: {' '.join(errs)}" for name, errs in form.errors.items())
        messages.error(request, f"Nothing changed on “{alert.title}”. {errors}")
        return redirect(_back(request))
    action = form.cleaned_data["action"]
    try:
        if action == "acknowledge":
            alert_acknowledge(alert=alert, user=request.user)
        elif action == "snooze":
            alert_snooze(alert=alert, user=request.user, until=form.snooze_until())
        elif action == "resolve":
            alert_resolve(alert=alert, user=request.user)
        else:
            alert_reopen(alert=alert, user=request.user)
    except ValueError as exc:
        messages.error(request, f"Nothing changed on “{alert.title}”: {exc}")
    else:
        done = {"acknowledge": "Acknowledged", "snooze": "Snoozed", "resolve": "Resolved", "reopen": "Reopened"}
        messages.success(request, f"{done[action]}: “{alert.title}”.")
    return redirect(_back(request))


def _back(request: HttpRequest) -> str:
    """Where the action came from (inbox with its filters, or a workspace page); only our own URLs."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return reverse("reps:alerts")


@require_GET
@rep_pages_required
def workspace_list(request: HttpRequest) -> HttpResponse:
    form = WorkspaceFilterForm(request.GET or None)
    workspaces = workspaces_for_list(request.user, **(form.filters() if request.GET else {}))
    context = {"nav": "workspaces", "form": form, "workspaces": workspaces[:INBOX_LIMIT], "total": workspaces.count()}
    return render(request, "reps/workspaces.html", {**context, "limit": INBOX_LIMIT})


@require_GET
@rep_pages_required
def workspace_detail(request: HttpRequest, workspace_id: str) -> HttpResponse:
    workspace = get_object_or_404(workspaces_visible_to(request.user), workspace_id=workspace_id)
    alerts = alerts_visible_to(request.user).filter(workspace_key=workspace.workspace_id).order_by("-created_at")
    context = {
        "nav": "workspaces",
        "workspace": workspace,
        "timeline": workspace_timeline(workspace),
        "usage_count": workspace_usage_count(workspace),
        "alerts": alerts,
        "snooze_form": AlertActionForm(),
        "here": request.get_full_path(),
        "salesforce": _salesforce_links(workspace),
        "salesforce_sync": settings.SALESFORCE_SYNC,
    }
    return render(request, "reps/workspace.html", context)


def _salesforce_links(workspace: Workspace) -> dict[str, str]:
    return {
        "workspace": salesforce_record_url("Workspace__c", workspace.salesforce_id),
        "lead": salesforce_record_url("Lead", workspace.lead.salesforce_id) if workspace.lead else "",
        "account": salesforce_record_url("Account", workspace.account.salesforce_id) if workspace.account else "",
        "contact": salesforce_record_url("Contact", workspace.contact.salesforce_id) if workspace.contact else "",
    }
