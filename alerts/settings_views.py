"""The rep's own settings page, /reps/settings/: channels, digest, quiet hours, time away.

Each rep edits only their own row (it is found by the signed-in user, never by an id in the URL). A rep
by group membership alone gets their Rep row when they first save. A Lifecycle admin who is not a rep has
no settings here; they edit reps in the admin.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from alerts.forms import RepSettingsForm
from alerts.models import Rep
from alerts.roles import REPS_GROUP, user_group_names
from alerts.views import rep_pages_required

#: The page's sections: (legend, the form's fields in it).
SECTIONS = (
    ("Channels", ("email_on", "slack_on", "slack_member_id")),
    ("Email delivery", ("delivery", "digest_hour")),
    ("Time zone and quiet hours", ("time_zone", "quiet_start", "quiet_end")),
    ("Time away", ("away_from", "away_until", "backup")),
)


def _page(request: HttpRequest, form: RepSettingsForm | None, status: int = 200) -> HttpResponse:
    sections = [(legend, [form[name] for name in names]) for legend, names in SECTIONS] if form else []
    context = {
        "nav": "settings",
        "form": form,
        "sections": sections,
        "default_hour": settings.ALERT_DIGEST_HOUR,
        "saved": _own_saved(request),
    }
    return render(request, "reps/settings.html", context, status=status)


def _own_saved(request: HttpRequest) -> Rep | None:
    """The rep's stored row (not the form's unsaved values) for the page's status lines."""
    return Rep.objects.select_related("backup__user").filter(user=request.user).first()


def _own_rep(request: HttpRequest) -> Rep | None:
    rep = Rep.objects.select_related("user", "backup__user").filter(user=request.user).first()
    if rep is None and REPS_GROUP in user_group_names(request.user):
        rep = Rep(user=request.user)
    return rep


@require_http_methods(["GET", "POST"])
@rep_pages_required
def rep_settings(request: HttpRequest) -> HttpResponse:
    rep = _own_rep(request)
    if rep is None:
        return _page(request, None)
    form = RepSettingsForm(request.POST or None, instance=rep)
    if request.method == "POST":
        if form.is_valid():
            form.save()
            messages.success(request, "Settings saved.")
            return redirect("reps:settings")
        # Nothing changed; each error is shown next to its field.
        return _page(request, form, status=400)
    return _page(request, form)
