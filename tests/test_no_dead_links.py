"""Every page a person can reach by following links answers: crawl from `/` as an admin and as a rep, over
every same-site link (pages, static files, the API docs), and find no 404 or 5xx on the way."""

from __future__ import annotations

import re
from collections import deque
from datetime import timedelta
from html import unescape
from urllib.parse import urldefrag, urljoin, urlsplit

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.test import Client, override_settings
from django.utils import timezone

from tests.reps.conftest import World, make_user, world  # noqa: F401 (a fixture: people and workspaces)
from tests.usage.test_behaviour import FEATURES, usage
from usage.rollups import usage_rollup
from usage.services import behaviour_refresh

pytestmark = pytest.mark.django_db

LINK = re.compile(r"""(?:href|src)=["']([^"'#][^"']*)["']""")
#: Links that act or leave (logging out ends the crawl; an export is a download of the same page).
SKIP = re.compile(r"/accounts/logout/|export=csv|/admin/logout/|[?&]_changelist_filters=|/delete/$|/history/")
LIMIT = 250
STATIC = "/" + settings.STATIC_URL.lstrip("/")


def crawl(client: Client, start: str = "/") -> dict[str, int]:
    """Status of every same-site URL reachable from `start` (query strings kept, fragments dropped)."""
    seen: dict[str, int] = {}
    queue = deque([start])
    while queue and len(seen) < LIMIT:
        url = queue.popleft()
        if url in seen:
            continue
        if url.startswith(STATIC):  # served by the front proxy from collectstatic: the finders must have it
            seen[url] = 200 if finders.find(urlsplit(url).path.removeprefix(STATIC)) else 404
            continue
        response = client.get(url, follow=True)
        seen[url] = response.status_code
        kind = response.get("Content-Type", "")
        if response.status_code != 200 or not kind.startswith("text/html"):
            continue
        page = response.redirect_chain[-1][0] if response.redirect_chain else url
        for target in LINK.findall(response.content.decode()):
            absolute = urldefrag(urljoin(page, unescape(target)))[0]
            parts = urlsplit(absolute)
            if parts.scheme not in ("", "http") or parts.netloc not in ("", "testserver") or SKIP.search(absolute):
                continue
            local = parts.path + (f"?{parts.query}" if parts.query else "")
            if local not in seen:
                queue.append(local)
    return seen


@pytest.fixture
def behaviour(request: pytest.FixtureRequest) -> World:
    people: World = request.getfixturevalue("world")
    now = timezone.now()
    for day in range(5):
        usage("ws_ann", now - timedelta(days=day, minutes=5), FEATURES[day % 2])
    with override_settings(BEHAVIOUR_PROFILES=False):
        usage_rollup()
    behaviour_refresh(workspace_keys=["ws_ann", "ws_bo", "ws_nobody"])
    return people


@pytest.mark.parametrize("person", ["rep", "admin"])
def test_no_dead_link_from_the_front_door(behaviour: World, person: str):
    client = Client()
    if person == "rep":
        client.force_login(behaviour.ann)
    else:
        client.force_login(make_user("root", is_staff=True, is_superuser=True))

    statuses = crawl(client)

    # /healthz answering 503 is the health check saying no task cluster runs here: an answer, not a dead link
    broken = {
        url: status
        for url, status in statuses.items()
        if status == 404 or (status >= 500 and not (url == "/healthz" and status == 503))
    }
    assert not broken, broken
    assert len(statuses) > (10 if person == "rep" else 100), f"the crawl saw only {len(statuses)} pages"
