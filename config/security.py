"""Session lifetimes and the security headers every answer carries.

- A session is signed out after SESSION_IDLE_TIMEOUT seconds without a request, and SESSION_COOKIE_AGE
  seconds after it logged in whatever the activity (saving a session would otherwise push Django's own
  expiry forward). The last request is written to the session at most once a minute.
- Every answer carries `Cache-Control: no-store` (pages and API answers hold personal data; static files
  are served before this) and a Content-Security-Policy: scripts and styles only from this origin, no
  plugins, no <base>, no framing. Swagger UI at /api/docs/ also gets its one inline <style>, by its hash.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.signals import user_logged_in
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_cache_control

from config.staff_otp import unverified_anonymous

LOGIN_AT = "engine_login_at"
SEEN_AT = "engine_seen_at"
SEEN_EVERY_SECONDS = 60

#: plotly.js (the charts) makes an empty <style> element and fills it through the CSSOM with its own fixed
#: rules: those two exact contents are allowed by their hashes, and no other inline style. A plotly upgrade
#: that changes its rules shows as a CSP error in the browser tests, with the hash to put here.
CHART_STYLE_HASHES = (
    "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='",  # the empty <style> it creates
    "'sha256-ji27qzEtxXZW+7dun6UwjHXJ18e6WAin1VvNtkzIE/o='",  # plotly.js 3 (plotly 7.1)'s stylesheet
)

_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": " ".join(["'self'", *CHART_STYLE_HASHES]),
    "img-src": "'self' data:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
CONTENT_SECURITY_POLICY = "; ".join(f"{name} {value}" for name, value in _POLICY.items())
DOCS_PATH = "/api/docs/"
_INLINE_STYLE = re.compile(rb"<style>(.*?)</style>", re.S)


def docs_policy(content: bytes) -> str:
    """Swagger UI's page (drf-spectacular) carries one inline <style>: allowed by its hash, and nothing else
    inline. Its script is a file of its own (SpectacularSwaggerSplitView)."""
    hashes = [base64.b64encode(hashlib.sha256(block).digest()).decode() for block in _INLINE_STYLE.findall(content)]
    styles = " ".join([_POLICY["style-src"], *(f"'sha256-{digest}'" for digest in hashes)])
    return "; ".join(f"{name} {styles if name == 'style-src' else value}" for name, value in _POLICY.items())


def session_expired(session, *, now: float) -> bool:
    """Idle for longer than SESSION_IDLE_TIMEOUT (0: never), or logged in longer ago than SESSION_COOKIE_AGE."""
    login_at = session.setdefault(LOGIN_AT, now)  # sessions from before this check start counting now
    seen_at = session.get(SEEN_AT, now)
    idle = settings.SESSION_IDLE_TIMEOUT
    return bool(idle and now - seen_at > idle) or now - login_at > settings.SESSION_COOKIE_AGE


def _stamp_login(sender, request: HttpRequest, user, **kwargs) -> None:
    """Each login starts both clocks afresh (Django keeps a session's data when the same user logs in again)."""
    if hasattr(request, "session"):
        request.session[LOGIN_AT] = request.session[SEEN_AT] = time.time()


user_logged_in.connect(_stamp_login, dispatch_uid="config.security.stamp_login")


class SessionTimeoutMiddleware:
    """After authentication: an expired session is logged out and the request goes on anonymous."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if settings.SESSION_COOKIE_NAME in request.COOKIES and request.user.is_authenticated:
            now = time.time()
            if session_expired(request.session, now=now):
                logout(request)
                request.user = unverified_anonymous()
            elif now - request.session.get(SEEN_AT, 0) >= SEEN_EVERY_SECONDS:
                request.session[SEEN_AT] = now
        return self.get_response(request)


class SecurityHeadersMiddleware:
    """`Cache-Control: no-store` and a Content-Security-Policy on every answer that has none of its own."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        patch_cache_control(response, no_store=True)
        # Django's technical error pages (DEBUG only) are made of inline style and script.
        technical = settings.DEBUG and response.status_code >= 400
        if "Content-Security-Policy" not in response and not technical:
            docs = request.path == DOCS_PATH and not response.streaming
            response["Content-Security-Policy"] = docs_policy(response.content) if docs else CONTENT_SECURITY_POLICY
        return response
