"""Reading webhook bodies (issue 18 items 6–7): a chunked body without Content-Length is 411, not an empty
body refused as unsigned; a body that stops arriving is 408 after WEBHOOK_BODY_READ_TIMEOUT_SECONDS instead
of holding its thread; Marketo's token is checked before its body is read. gunicorn itself is exercised in
tests/deploy/test_slow_clients.py."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpResponse
from django.test import RequestFactory

from billing.webhook import stripe_webhook
from events.models import Event
from events.views import marketo_webhook, provisioning_webhook
from tests.fuzz.conftest import MARKETO_TOKEN, STRIPE_SECRET

pytestmark = pytest.mark.django_db

VIEWS = {"provisioning": provisioning_webhook, "stripe": stripe_webhook, "marketo": marketo_webhook}


@pytest.fixture(autouse=True)
def configured(settings: Any) -> None:
    cache.clear()  # the rate limits' counters: other tests' refusals this minute must not count here
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_SECRET
    settings.MARKETO_WEBHOOK_TOKEN = MARKETO_TOKEN
    settings.WEBHOOK_BODY_READ_TIMEOUT_SECONDS = 0.3


def request(source: str, stream: Any, *, length: int | None, authorized: bool = True, **extra: Any) -> WSGIRequest:
    """A POST as a WSGI server hands it over: the environ's input stream and, unless None, its Content-Length."""
    headers = {"HTTP_AUTHORIZATION": f"Bearer {MARKETO_TOKEN}"} if authorized and source == "marketo" else {}
    built = RequestFactory().post(f"/webhooks/{source}/", content_type="application/json", **headers, **extra)
    environ = {key: value for key, value in built.environ.items() if key != "CONTENT_LENGTH"}
    if length is not None:
        environ["CONTENT_LENGTH"] = str(length)
    return WSGIRequest({**environ, "wsgi.input": stream})


def answered_within(seconds: float, call: Callable[[], HttpResponse]) -> HttpResponse:
    """call() in a thread; fails instead of hanging when it does not return in time (the old read did not)."""
    result: list[HttpResponse] = []
    worker = threading.Thread(target=lambda: result.append(call()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert result, f"no answer within {seconds} s"
    return result[0]


@pytest.mark.parametrize("source", VIEWS)
def test_a_chunked_body_without_content_length_is_411_and_spends_no_unauthenticated_budget(source, settings):
    settings.WEBHOOK_UNAUTHENTICATED_LIMIT_PER_MINUTE = 1
    chunked = io.BytesIO(b'4\r\n{"a"\r\n0\r\n\r\n')

    responses = [
        VIEWS[source](request(source, chunked, length=None, HTTP_TRANSFER_ENCODING="chunked")) for _ in range(3)
    ]

    assert [response.status_code for response in responses] == [411, 411, 411]
    assert responses[0].content == b'{"error": "length_required"}'
    unsigned = VIEWS[source](request(source, io.BytesIO(b""), length=0, authorized=False))
    assert unsigned.status_code == 401  # the budget of one is still there: 401, not 429
    assert not Event.objects.exists()


@pytest.fixture
def stalled() -> Iterator[tuple[socket.socket, Any]]:
    """A socket whose peer sent 4 bytes of a body and then nothing, as gunicorn's environ offers it: the
    socket as gunicorn.socket and a reader over it as wsgi.input."""
    ours, peer = socket.socketpair()
    peer.sendall(b'{"le')
    stream = ours.makefile("rb")
    yield ours, stream
    peer.close()  # first: a read still waiting (the old code's) then ends, and closing its stream cannot block
    stream.close()
    ours.close()


@pytest.mark.parametrize("source", VIEWS)
def test_a_body_that_stops_arriving_is_408_after_the_read_timeout(source, stalled):
    sock, stream = stalled

    response = answered_within(
        5, lambda: VIEWS[source](request(source, stream, length=1000, **{"gunicorn.socket": sock}))
    )

    assert response.status_code == 408
    assert response.content == b'{"error": "request_timeout"}'
    assert sock.gettimeout() is None  # gunicorn's own setting is back for whatever it does next
    assert not Event.objects.exists()


def test_marketo_refuses_a_bad_token_without_reading_the_body(stalled):
    sock, stream = stalled

    response = answered_within(
        0.2,
        lambda: marketo_webhook(request("marketo", stream, length=1000, authorized=False, **{"gunicorn.socket": sock})),
    )

    assert response.status_code == 401
    assert sock.recv(4) == b'{"le'  # still unread
