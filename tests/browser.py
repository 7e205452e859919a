"""What every browser test shares: Debian's Chromium through chromedriver (skipped, saying why, only when
either is absent), a driver at a given width, and a live server built with the HTTPS redirect off.

The test modules turn these into fixtures (`browser`, `plain_http_server`) of their own scope."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings
from pytest_django.live_server_helper import LiveServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
        reason="needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver",
    ),
]


def chrome(width: int, height: int = 900) -> Iterator:
    """A headless Chromium driver (quit at the end) whose console log a test can read for CSP violations."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        options.add_argument(argument)
    # The console log: a page the Content-Security-Policy breaks says so there.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver's path is given, so Selenium Manager never looks for (or downloads) one.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def plain_http_live_server() -> Iterator[LiveServer]:
    """A live server of our own: its middleware must be built with the HTTPS redirect off.

    pytest-django's `live_server` is started once per session with the production settings the suite
    runs under, so its SecurityMiddleware would send the browser to https:// for good.
    """
    server = LiveServer("127.0.0.1", start=False)
    with override_settings(SECURE_SSL_REDIRECT=False):
        server.start()
    yield server
    server.stop()
