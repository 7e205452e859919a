"""Rep pages (/reps/): dashboard, alert inbox, workspace page. Views parse input and call services.

Anonymous visitors are sent to the login page; signed-in users who are neither a rep nor a Lifecycle
admin get 403. What a rep sees is decided by the selectors, never here: an alert or workspace outside
their set answers 404, the same as one that does not exist.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import wraps
from typing import NamedTuple

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from alerts.currency import rates_current
from alerts.exports import ALERT_COLUMNS, WORKSPACE_COLUMNS, alert_rows, csv_lines, workspace_rows
from alerts.forms import AlertActionForm, AlertFilterForm, BulkAcknowledgeForm, WorkspaceFilterForm
from alerts.roles import user_is_alerts_admin
from alerts.selectors import (
    alert_page,
    alerts_for_inbox,
    dashboard_for,
    owner_rep,
    plan_shown,
    salesforce_record_url,
    user_may_use_rep_pages,
    workspace_timeline,
    workspace_usage_count,
    workspaces_for_list,
    workspaces_visible_to,
)
from alerts.services import (
    alert_acknowledge,
    alert_reopen,
    alert_resolve,
    alert_snooze,
    alerts_acknowledge,
    alerts_visible_to,
)
from triggers.selectors import workspace_firings
from usage.selectors import behaviour_panel
from workspaces.models import Workspace

#: Rows per page on the inbox and the workspaces list.
PAGE_SIZE = 50

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


class WorkspaceRow(NamedTuple):
    ws: Workspace
    owner: AbstractBaseUser | None
    plan: str


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """`/`: a signed-in user's home (the rep pages for reps and Lifecycle admins, the admin for other staff
    who may use it), everyone else the login page."""
    if not request.user.is_authenticated:
        return redirect_to_login("/", reverse("login"))
    if user_may_use_rep_pages(request.user):
        return redirect("reps:dashboard")
    if admin.site.has_permission(request):
        return redirect("admin:index")
    raise PermissionDenied("This account has no pages here: ask a Lifecycle admin for the Reps group.")


@require_GET
@rep_pages_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "reps/dashboard.html", {"nav": "dashboard", "board": dashboard_for(request.user)})


@require_GET
@rep_pages_required
def alert_inbox(request: HttpRequest) -> HttpResponse:
    form = AlertFilterForm(request.GET or None)
    alerts = alerts_for_inbox(request.user, **(form.filters() if request.GET else {}))
    if request.GET.get("export") == "csv":
        return _csv("alerts", ALERT_COLUMNS, alert_rows(alerts))
    page = _page(request, alerts)
    context = {
        "nav": "alerts",
        "form": form,
        "page": page,
        "alerts": page.object_list,
        "query": _query(request),
        "snooze_form": AlertActionForm(),
        "here": request.get_full_path(),
    }
    return render(request, "reps/alerts.html", context)


@require_POST
@rep_pages_required
def alerts_acknowledge_view(request: HttpRequest) -> HttpResponse:
    """Bulk acknowledge: the ticked alerts, all of them the user's, or nothing changes."""
    form = BulkAcknowledgeForm(request.POST, alerts=alerts_visible_to(request.user))
    if not form.is_valid():
        messages.error(request, "Nothing acknowledged. " + " ".join(form.errors.get("alert", [])))
        return redirect(_back(request))
    changed = alerts_acknowledge(alert_ids=[alert.pk for alert in form.cleaned_data["alert"]], user=request.user)
    ticked = len(form.cleaned_data["alert"])
    unchanged = f" ({ticked - changed} already acknowledged or resolved)" if ticked > changed else ""
    messages.success(request, f"Acknowledged {changed} alert{pluralize(changed)}{unchanged}.")
    return redirect(_back(request))


@require_http_methods(["GET", "POST"])
@rep_pages_required
def alert_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: the alert's own page (why, the events behind it, routing, deliveries); POST: an action on it."""
    if request.method == "POST":
        return _alert_act(request, pk)
    page = alert_page(request.user, pk)
    if page is None:
        raise Http404("No such alert among yours.")
    context = {
        "nav": "alerts",
        "page": page,
        "alert": page.alert,
        "snooze_form": AlertActionForm(),
        "here": request.get_full_path(),
    }
    return render(request, "reps/alert.html", context)


def _alert_act(request: HttpRequest, pk: int) -> HttpResponse:
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


def _page(request: HttpRequest, rows: QuerySet) -> Page:
    """The page asked for (`?page=`); a number past the end gives the last page, anything else the first."""
    return Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))


def _query(request: HttpRequest) -> str:
    """The current filters and sort as a query string, without the page (page links add their own)."""
    params = request.GET.copy()
    params.pop("page", None)
    params.pop("export", None)
    return params.urlencode()


def _csv(name: str, header: tuple[str, ...], rows: Iterator[list]) -> StreamingHttpResponse:
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response = StreamingHttpResponse(csv_lines(header, rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}-{stamp}.csv"'
    return response


@require_GET
@rep_pages_required
def workspace_list(request: HttpRequest) -> HttpResponse:
    form = WorkspaceFilterForm(request.GET or None)
    rates = rates_current()
    workspaces = workspaces_for_list(request.user, rates=rates, **(form.filters() if request.GET else {}))
    if request.GET.get("export") == "csv":
        return _csv("workspaces", WORKSPACE_COLUMNS, workspace_rows(workspaces, rates.reporting))
    page = _page(request, workspaces)
    context = {
        "nav": "workspaces",
        "form": form,
        "page": page,
        "workspaces": page.object_list,
        "rows": [WorkspaceRow(ws, owner_rep(ws), plan_shown(ws)) for ws in page.object_list],
        "query": _query(request),
        "rates": rates,
        "rates_as_of": min((rate.as_of for rate in rates.by_currency.values()), default=None),
    }
    return render(request, "reps/workspaces.html", context)


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
        "plan": plan_shown(workspace),
        "alerts": alerts,
        "snooze_form": AlertActionForm(),
        "here": request.get_full_path(),
        "salesforce": _salesforce_links(workspace),
        "salesforce_sync": settings.SALESFORCE_SYNC,
        "behaviour": behaviour_panel(workspace),
        "firings": workspace_firings(workspace_key=workspace.workspace_id),  # why, and why not
    }
    return render(request, "reps/workspace.html", context)


def _salesforce_links(workspace: Workspace) -> dict[str, str]:
    return {
        "workspace": salesforce_record_url("Workspace__c", workspace.salesforce_id),
        "lead": salesforce_record_url("Lead", workspace.lead.salesforce_id) if workspace.lead else "",
        "account": salesforce_record_url("Account", workspace.account.salesforce_id) if workspace.account else "",
        "contact": salesforce_record_url("Contact", workspace.contact.salesforce_id) if workspace.contact else "",
    }
