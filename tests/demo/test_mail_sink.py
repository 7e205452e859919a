"""The demo's mail sink: real SMTP in over a socket, readable pages out, loopback-only without a password."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.management import CommandError, call_command

from emulators.mailsink import MailSink


@pytest.fixture
def sink() -> Iterator[MailSink]:
    with MailSink(smtp_port=0, http_port=0) as running:
        yield running


def send_mail_to(sink: MailSink, *, subject: str, text: str, html: str | None = None) -> None:
    connection = get_connection("django.core.mail.backends.smtp.EmailBackend", host="127.0.0.1", port=sink.smtp_port)
    message = EmailMultiAlternatives(
        subject, text, "engine@lifecycle.test", ["ann@lifecycle.test"], connection=connection
    )
    if html is not None:
        message.attach_alternative(html, "text/html")
    assert message.send() == 1


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def test_a_mail_sent_over_smtp_is_listed_and_rendered(sink):
    send_mail_to(
        sink,
        subject="Trial expiring in 3 days: Bluefin Analytics",
        text="Dana's trial ends on Friday.",
        html='<p>Dana\'s trial ends <b>Friday</b>.</p><script>alert("x")</script>',
    )

    status, headers, listing = get(sink.web_url)
    assert status == 200
    assert "Trial expiring in 3 days: Bluefin Analytics" in listing
    assert "ann@lifecycle.test" in listing
    assert (
        "script-src" not in headers["Content-Security-Policy"]
        and "default-src 'none'" in headers["Content-Security-Policy"]
    )

    [summary] = json.loads(get(sink.web_url + "api/messages")[2])
    assert summary["subject"] == "Trial expiring in 3 days: Bluefin Analytics"
    assert summary["to"] == ["ann@lifecycle.test"]

    status, _, detail = get(f"{sink.web_url}messages/{summary['id']}/")
    assert status == 200
    assert "Dana&#x27;s trial ends on Friday." in detail
    assert "<iframe sandbox" in detail
    assert "&lt;b&gt;Friday&lt;/b&gt;" in detail  # the HTML part only inside the sandboxed frame
    assert "<script>" not in detail

    status, headers, raw = get(f"{sink.web_url}messages/{summary['id']}.eml")
    assert status == 200 and headers["Content-Type"] == "message/rfc822"
    assert "Subject: Trial expiring in 3 days: Bluefin Analytics" in raw


def test_newest_first_and_only_the_most_recent_are_kept():
    with MailSink(smtp_port=0, http_port=0, limit=2) as sink:
        for n in range(3):
            send_mail_to(sink, subject=f"mail {n}", text="body")
        assert [mail.subject for mail in sink.store.all()] == ["mail 2", "mail 1"]
        assert get(f"{sink.web_url}messages/1/")[0] == 404


def test_with_a_password_the_pages_need_it():
    with MailSink(smtp_port=0, http_port=0, password="s3cret-sink") as sink:
        assert get(sink.web_url)[0] == 401
        wrong = base64.b64encode(b"any:nope").decode()
        assert get(sink.web_url, {"Authorization": f"Basic {wrong}"})[0] == 401
        right = base64.b64encode(b"any:s3cret-sink").decode()
        assert get(sink.web_url, {"Authorization": f"Basic {right}"})[0] == 200


def test_listening_beyond_loopback_needs_a_password():
    with pytest.raises(ValueError, match="needs a password"):
        MailSink(host="0.0.0.0", smtp_port=0, http_port=0)  # noqa: S104
    with pytest.raises(CommandError, match="MAIL_SINK_PASSWORD"):
        call_command("mail_sink", "--host", "0.0.0.0", "--smtp-port", "0", "--http-port", "0")  # noqa: S104
