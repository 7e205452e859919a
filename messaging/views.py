"""The unsubscribe page (messaging/unsubscribe.py): no login, the signed token is the permission."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from messaging.models import Unsubscribe
from messaging.unsubscribe import (
    ONE_CLICK_BODY,
    TokenInvalid,
    address_of,
    masked,
    token_key,
    unsubscribe_record,
    unsubscribed,
)


@csrf_exempt  # a mail client's one-click POST has no CSRF token: the signed token in the URL stands for it
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET: a button (link scanners only look); POST: unsubscribe, from the button or one-click."""
    try:
        key = token_key(token)
    except TokenInvalid as exc:
        return render(request, "messaging/unsubscribe.html", {"problem": str(exc)}, status=400)
    address = address_of(key)
    if not address:
        problem = "This message is no longer on record, so there is nothing to unsubscribe."
        return render(request, "messaging/unsubscribe.html", {"problem": problem}, status=404)
    done = unsubscribed(address)
    if request.method == "POST" and done is None:
        one_click = request.POST.get("List-Unsubscribe") == ONE_CLICK_BODY.partition("=")[2]
        how = Unsubscribe.How.ONE_CLICK if one_click else Unsubscribe.How.PAGE
        done = unsubscribe_record(address=address, how=how, dispatch_key=key)
    context = {"address": masked(address), "done": done, "token": token}
    return render(request, "messaging/unsubscribe.html", context)
