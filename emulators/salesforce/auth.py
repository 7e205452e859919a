"""OAuth 2.0 client-credentials tokens and the org's daily API request limit."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from typing import Any

from . import ids


class Auth:
    def __init__(self, client_id: str, client_secret: str, *, token_ttl: float | None = None) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl = token_ttl
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self) -> str:
        token = f"{ids.ORG_ID}!AQ{secrets.token_urlsafe(60)}"
        with self._lock:
            self._tokens[token] = time.monotonic()
        return token

    def valid(self, token: str | None) -> bool:
        if not token:
            return False
        with self._lock:
            issued = self._tokens.get(token)
            if issued is None:
                return False
            if self.token_ttl is not None and time.monotonic() - issued > self.token_ttl:
                del self._tokens[token]
                return False
            return True

    def expire_all(self) -> None:
        with self._lock:
            self._tokens.clear()

    def check_client(self, client_id: str | None, client_secret: str | None) -> bool:
        return (
            client_id is not None
            and client_secret is not None
            and hmac.compare_digest(client_id, self.client_id)
            and hmac.compare_digest(client_secret, self.client_secret)
        )

    def token_response(self, instance_url: str) -> dict[str, Any]:
        token = self.issue()
        issued_at = str(int(time.time() * 1000))
        identity = f"{instance_url}/id/{ids.ORG_ID_18}/{ids.USER_ID_18}"
        digest = hmac.new(self.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256).digest()
        return {
            "access_token": token,
            "signature": base64.b64encode(digest).decode(),
            "scope": "api",
            "instance_url": instance_url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
        }


class Limits:
    """``DailyApiRequests``: every REST/SOAP call counts one; past the max the org answers 403."""

    def __init__(self, daily_max: int = 100_000) -> None:
        self.max = daily_max
        self.used = 0
        self._lock = threading.Lock()

    def charge(self) -> bool:
        """Count one call; False (and nothing counted) when the limit is exhausted."""
        with self._lock:
            if self.used >= self.max:
                return False
            self.used += 1
            return True

    def set(self, *, daily_max: int | None = None, used: int | None = None) -> None:
        with self._lock:
            if daily_max is not None:
                self.max = daily_max
            if used is not None:
                self.used = used

    def header(self) -> str:
        with self._lock:
            return f"api-usage={self.used}/{self.max}"

    def usage(self) -> tuple[int, int]:
        with self._lock:
            return self.used, self.max

    def body(self) -> dict[str, Any]:
        used, daily_max = self.usage()
        return {
            "DailyApiRequests": {"Max": daily_max, "Remaining": max(daily_max - used, 0)},
            "DailyAsyncApexExecutions": {"Max": 250000, "Remaining": 250000},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
            "DataStorageMB": {"Max": 5, "Remaining": 5},
            "FileStorageMB": {"Max": 20, "Remaining": 20},
            "SingleEmail": {"Max": 15, "Remaining": 15},
        }
