"""Staff TOTP on every surface with staff powers, session timeouts, API token lifetime and revocation,
and the headers every answer carries (Cache-Control, Content-Security-Policy)."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from alerts.models import Rep
from alerts.roles import ADMINS_GROUP, API_SERVICES_GROUP, REPS_GROUP
from config.security import CHART_STYLE_HASHES
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-staple-42"
T0 = datetime(2031, 3, 3, 9, 0, tzinfo=UTC)
#: Every surface that grants staff powers, with what an unverified staff session must get there.
STAFF_SURFACES = {
    "/admin/": 302,
    "/ops/": 302,
    "/metrics": 404,  # no METRICS_TOKEN: the endpoint does not exist for anyone but admins
    "/api/workspaces/": 401,
    "/api/docs/": 302,
    "/reps/": 302,
    "/reps/workspaces/ws_1/": 302,
}


@pytest.fixture(autouse=True)
def fast_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def groups() -> None:
    """The role groups with their permissions (a transactional test elsewhere may have flushed them)."""
    call_command("privacy", "groups", stdout=io.StringIO())


def make_user(username: str, *, group: str | None = None, **fields) -> User:
    user = User.objects.create_user(username, password=PASSWORD, **fields)
    if group:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    return user


@pytest.fixture
def lena(groups) -> User:
    """A Lifecycle admin: staff, sees /ops/, the admin, every workspace."""
    WorkspaceFactory(workspace_id="ws_1")
    return make_user("lena", group=ADMINS_GROUP, is_staff=True)


def code_for(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


def rep_login(client: Client, username: str, **extra) -> object:
    return client.post("/accounts/login/", {"username": username, "password": PASSWORD, **extra})


# --- Staff TOTP everywhere ---------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "status"), STAFF_SURFACES.items())
def test_an_unverified_staff_session_gets_nothing_with_staff_powers(lena, client, settings, url, status):
    # given: TOTP is required and lena's session was never verified by a device
    settings.STAFF_TOTP_REQUIRED = True
    client.force_login(lena)

    # when
    response = client.get(url)

    # then: treated as anonymous — sent to a login that asks for the code, or 401/404
    assert response.status_code == status, response.content[:200]
    if status == 302:
        assert re.match(r"^/(admin|accounts)/login/", response["Location"])


@pytest.mark.parametrize("url", [url for url in STAFF_SURFACES if url != "/admin/"])
def test_without_the_setting_the_same_session_reaches_them(lena, client, url):
    client.force_login(lena)

    assert client.get(url).status_code == 200


def test_a_lifecycle_admin_without_a_device_cannot_log_in_at_the_rep_login(lena, client, settings):
    settings.STAFF_TOTP_REQUIRED = True

    response = rep_login(client, "lena")

    assert response.status_code == 200
    assert "need the code from their authenticator" in response.content.decode()
    assert client.get("/reps/").status_code == 302


def test_a_wrong_code_is_refused(lena, client, settings):
    settings.STAFF_TOTP_REQUIRED = True
    TOTPDevice.objects.create(user=lena, name="phone", confirmed=True)

    response = rep_login(client, "lena", otp_token="000000")

    assert response.status_code == 200 and "Invalid token" in response.content.decode()
    assert client.get("/ops/").status_code == 302


def test_with_a_code_a_lifecycle_admin_reaches_every_staff_surface(lena, client, settings):
    # given
    settings.STAFF_TOTP_REQUIRED = True
    device = TOTPDevice.objects.create(user=lena, name="phone", confirmed=True)

    # when: she logs in at the rep login with her password and the code (her one device is picked for her)
    response = rep_login(client, "lena", otp_token=code_for(device), next="/reps/")

    # then
    assert response.status_code == 302 and response["Location"] == "/reps/"
    for url in ("/admin/", "/ops/", "/api/workspaces/", "/api/docs/", "/reps/workspaces/ws_1/"):
        assert client.get(url).status_code == 200, url
    assert "(admin)" in client.get("/reps/").content.decode()


def test_a_non_staff_lifecycle_admin_needs_a_code_too(groups, client, settings):
    # given: in the admins group without is_staff: admin visibility on the rep pages and the API
    settings.STAFF_TOTP_REQUIRED = True
    WorkspaceFactory(workspace_id="ws_1")
    kim = make_user("kim", group=ADMINS_GROUP)
    client.force_login(kim)
    assert client.get("/reps/workspaces/ws_1/").status_code == 302

    # when: she gets a device from the command and logs in with its code
    out = io.StringIO()
    call_command("totp_device", "kim", stdout=out)
    assert out.getvalue().startswith("otpauth://totp/")
    response = rep_login(Client(), "kim", otp_token=code_for(TOTPDevice.objects.get(user=kim)))

    # then
    assert response.status_code == 302


def test_reps_need_no_code(groups, client, settings):
    settings.STAFF_TOTP_REQUIRED = True
    ann = make_user("ann", group=REPS_GROUP)
    Rep.objects.create(user=ann)

    assert rep_login(client, "ann").status_code == 302
    assert client.get("/reps/").status_code == 200


def test_the_device_command_refuses_reps(groups):
    make_user("ann", group=REPS_GROUP)

    with pytest.raises(CommandError, match="reps need no device"):
        call_command("totp_device", "ann", stdout=io.StringIO())


def test_staff_tokens_are_refused_while_totp_is_required(lena, settings):
    # Decision: a token cannot pass a second factor, so staff powers are not reachable by token.
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=lena).key}")
    assert api.get("/api/workspaces/").status_code == 200

    settings.STAFF_TOTP_REQUIRED = True
    response = api.get("/api/workspaces/")

    assert response.status_code == 403
    assert response.json()["error"] == "staff_token_refused"


def test_service_account_tokens_work_while_totp_is_required(groups, settings):
    settings.STAFF_TOTP_REQUIRED = True
    out = io.StringIO()
    call_command("api_token", "create", "reporting", "--service", stdout=out, stderr=io.StringIO())

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {out.getvalue().strip()}")

    assert api.get("/api/workspaces/").status_code == 200
    assert User.objects.get(username="reporting").groups.filter(name=API_SERVICES_GROUP).exists()


# --- Session timeouts --------------------------------------------------------------------------------


def test_a_session_idle_longer_than_the_timeout_is_signed_out(lena, client, settings):
    settings.SESSION_IDLE_TIMEOUT = 30 * 60
    with time_machine.travel(T0, tick=False) as clock:
        client.force_login(lena)
        assert client.get("/reps/").status_code == 200
        clock.shift(timedelta(minutes=29))
        assert client.get("/reps/").status_code == 200  # activity keeps it alive...
        clock.shift(timedelta(minutes=29))
        assert client.get("/reps/").status_code == 200

        clock.shift(timedelta(minutes=31))  # ...idleness ends it

        assert client.get("/reps/").status_code == 302
        assert client.get("/api/workspaces/").status_code == 401
        assert client.get("/reps/").status_code == 302  # logged out for good, not only for one request


def test_an_active_session_still_ends_after_the_absolute_age(lena, client, settings):
    settings.SESSION_IDLE_TIMEOUT = 30 * 60
    settings.SESSION_COOKIE_AGE = 12 * 3600
    with time_machine.travel(T0, tick=False) as clock:
        client.force_login(lena)
        for _ in range(12 * 3):  # a request every 20 minutes for 12 hours
            clock.shift(timedelta(minutes=20))
            assert client.get("/reps/").status_code == 200

        clock.shift(timedelta(minutes=20))

        assert client.get("/reps/").status_code == 302


# --- API tokens: lifetime and revocation -----------------------------------------------------------


@pytest.fixture
def service_token(groups) -> str:
    out = io.StringIO()
    with time_machine.travel(T0, tick=False):
        call_command("api_token", "create", "reporting", "--service", stdout=out, stderr=io.StringIO())
    return out.getvalue().strip()


def token_api(key: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return api


def test_a_token_expires_after_its_lifetime_with_a_clear_error(service_token, settings):
    settings.API_TOKEN_LIFETIME_DAYS = 90
    with time_machine.travel(T0 + timedelta(days=89, hours=23), tick=False):
        assert token_api(service_token).get("/api/workspaces/").status_code == 200

    with time_machine.travel(T0 + timedelta(days=90, seconds=1), tick=False):
        response = token_api(service_token).get("/api/workspaces/")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Token")
    assert response.json() == {
        "error": "token_expired",
        "detail": "This token expired at 2031-06-01T09:00:00Z; ask for a new one.",
    }


def test_a_lifetime_of_zero_means_tokens_never_expire(service_token, settings):
    settings.API_TOKEN_LIFETIME_DAYS = 0
    with time_machine.travel(T0 + timedelta(days=3650), tick=False):
        assert token_api(service_token).get("/api/workspaces/").status_code == 200


def test_the_command_revokes_a_token(service_token):
    call_command("api_token", "revoke", "reporting", stdout=io.StringIO())

    assert token_api(service_token).get("/api/workspaces/").status_code == 401
    with pytest.raises(CommandError, match="has no token"):
        call_command("api_token", "revoke", "reporting", stdout=io.StringIO())


def test_a_new_token_replaces_the_old_one(service_token):
    out = io.StringIO()
    call_command("api_token", "create", "reporting", stdout=out, stderr=io.StringIO())

    assert token_api(service_token).get("/api/workspaces/").status_code == 401
    assert token_api(out.getvalue().strip()).get("/api/workspaces/").status_code == 200


def test_an_admin_revokes_a_token_in_the_admin(service_token, client):
    root = make_user("root", is_staff=True, is_superuser=True)
    client.force_login(root)
    user = User.objects.get(username="reporting")

    response = client.post(f"/admin/authtoken/tokenproxy/{user.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert token_api(service_token).get("/api/workspaces/").status_code == 401


def test_the_list_shows_expiry_never_keys(service_token, settings):
    settings.API_TOKEN_LIFETIME_DAYS = 90
    out = io.StringIO()
    with time_machine.travel(T0 + timedelta(days=100), tick=False):
        call_command("api_token", "list", stdout=out)

    assert "reporting\tservice\tcreated 2031-03-03 09:00Z\texpires 2031-06-01 09:00Z\tEXPIRED" in out.getvalue()
    assert service_token not in out.getvalue()


def test_a_staff_user_cannot_be_made_a_service_account(groups):
    make_user("root", is_staff=True, is_superuser=True)

    with pytest.raises(CommandError, match="is staff"):
        call_command("api_token", "create", "root", "--service", stdout=io.StringIO(), stderr=io.StringIO())


# --- Headers: no-store and the Content-Security-Policy ---------------------------------------------


def pages_for_an_admin(client: Client) -> dict[str, object]:
    return {url: client.get(url) for url in ("/reps/", "/reps/workspaces/ws_1/", "/ops/", "/admin/", "/api/docs/")}


def test_pages_and_api_answers_with_personal_data_are_never_stored(lena, client, service_token):
    client.force_login(lena)
    answers = {**pages_for_an_admin(client), "api": token_api(service_token).get("/api/workspaces/ws_1/")}
    answers["login"] = Client().get("/accounts/login/")

    for name, response in answers.items():
        assert response.status_code == 200, name
        assert "no-store" in response["Cache-Control"], name


def test_every_page_has_a_content_security_policy_without_inline_script(lena, client):
    client.force_login(lena)

    for url, response in {**pages_for_an_admin(client), "/accounts/login/": Client().get("/accounts/login/")}.items():
        policy = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
        assert policy["script-src"] == "'self'", url
        assert policy["object-src"] == "'none'" and policy["base-uri"] == "'self'", url
        html = response.content.decode()
        # no inline script: every <script> has a src, and no on…= handler attributes
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), url
        assert not re.search(r"\son[a-z]+=", html), url
        assert "unsafe" not in response["Content-Security-Policy"], url
        # Beside 'self': the two fixed contents plotly.js puts in a <style> of its own (the charts), by hash
        charts = " ".join(["'self'", *CHART_STYLE_HASHES])
        if url == "/api/docs/":  # and Swagger UI's one inline <style>, allowed by its hash only
            assert re.fullmatch(re.escape(charts) + r" 'sha256-[A-Za-z0-9+/]{43}='", policy["style-src"]), url
        else:
            assert policy["style-src"] == charts, url
            assert "<style" not in html and " style=" not in html, url


def test_debug_error_pages_keep_their_inline_script(client, settings):
    # Django's technical 404 page (DEBUG only) needs its inline style and script; production pages never do.
    settings.DEBUG = True
    debug = client.get("/reps/nothing-here/")
    settings.DEBUG = False
    production = client.get("/reps/nothing-here/")

    assert debug.status_code == production.status_code == 404
    assert "Content-Security-Policy" not in debug
    assert "script-src 'self'" in production["Content-Security-Policy"]
