"""`manage.py salesforce_emulator`: prints where it listens and what it accepts, serves until a signal."""

from __future__ import annotations

import io
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
import requests
from django.core.management import call_command

pytestmark = []


def test_command_serves_until_signalled(tmp_path: Path) -> None:
    out = io.StringIO()
    bundle = tmp_path / "bundle.pem"
    seen: dict[str, object] = {}

    def drive() -> None:
        deadline = time.monotonic() + 20
        while "Ctrl-C stops it." not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            text = out.getvalue()
            instance = re.search(r"instance URL:\s+(\S+)", text).group(1)
            secret = re.search(r"client secret:\s+(\S+)", text).group(1)
            client = re.search(r"client id:\s+(\S+)", text).group(1)
            seen["token"] = requests.post(
                f"{instance}/services/oauth2/token",
                data={"grant_type": "client_credentials", "client_id": client, "client_secret": secret},
                verify=str(bundle),
                timeout=5,
            ).json()
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=drive)
    thread.start()
    call_command("salesforce_emulator", "--port", "0", "--ca-bundle-out", str(bundle), stdout=out)
    thread.join(timeout=5)
    assert signal.getsignal(signal.SIGTERM) == previous  # the command restores the handlers it replaced
    text = out.getvalue()
    assert "export REQUESTS_CA_BUNDLE=" + str(bundle) in text
    assert "export SALESFORCE_CLIENT_SECRET=" in text
    assert text.rstrip().endswith("Salesforce emulator stopped.")
    assert seen["token"]["token_type"] == "Bearer"  # type: ignore[index]
    assert bundle.read_text().count("BEGIN CERTIFICATE") >= 2


def test_command_reports_a_busy_port() -> None:
    import socket

    from django.core.management import CommandError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(CommandError, match="cannot listen"):
            call_command("salesforce_emulator", "--port", str(port), stdout=io.StringIO())
