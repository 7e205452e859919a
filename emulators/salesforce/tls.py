"""TLS for the emulator: a throwaway trustme CA, a server certificate for 127.0.0.1/localhost, and a CA
bundle that APPENDS the emulator's CA to the bundle already in use (``REQUESTS_CA_BUNDLE`` or certifi).

``requests`` lets ``REQUESTS_CA_BUNDLE`` override ``session.verify``; replacing the bundle would break
every other HTTPS call of the process, so the bundle written here always keeps the original certificates.
"""

from __future__ import annotations

import os
import re
import ssl
import tempfile
from pathlib import Path

import trustme

MARK_BEGIN = "# --- Lifecycle Engine Salesforce emulator CA (begin) ---"
MARK_END = "# --- Lifecycle Engine Salesforce emulator CA (end) ---"
_BLOCK_RE = re.compile(re.escape(MARK_BEGIN) + r".*?" + re.escape(MARK_END) + r"\n?", re.DOTALL)


def original_bundle_path() -> str | None:
    """The bundle ``requests`` would use: ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``, else certifi's."""
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        value = os.environ.get(var)
        if value and Path(value).is_file():
            return value
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi ships with requests
        return None
    return certifi.where()


def original_bundle_text(target: Path | None = None) -> str:
    path = original_bundle_path()
    if path is None:
        return ""
    try:
        text = Path(path).read_text()
    except OSError:
        return ""
    if target is not None and target.exists() and Path(path).resolve() == target.resolve():
        # Rewriting our own earlier output (a demo restarted with the same --ca-bundle-out): drop the
        # stale emulator CAs so they do not pile up. Other emulators' bundles are kept whole.
        text = _BLOCK_RE.sub("", text)
    return text


class EmulatorTLS:
    def __init__(self, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> None:
        self.ca = trustme.CA(organization_name="Lifecycle Engine Salesforce emulator")
        self.cert = self.ca.issue_cert(*hosts)
        self.ca_pem = self.ca.cert_pem.bytes().decode()
        self.bundle_path: str | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self.cert.configure_cert(ctx)
        return ctx

    def write_bundle(self, path: str | os.PathLike[str] | None = None) -> str:
        """Write original bundle + emulator CA to ``path`` (a temporary file when None); returns the path."""
        if path is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="sf-emulator-")
            target = Path(self._tmpdir.name) / "ca-bundle.pem"
        else:
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
        original = original_bundle_text(target)
        if original and not original.endswith("\n"):
            original += "\n"
        target.write_text(f"{original}{MARK_BEGIN}\n{self.ca_pem.strip()}\n{MARK_END}\n")
        self.bundle_path = str(target)
        return self.bundle_path

    def cleanup(self) -> None:
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
