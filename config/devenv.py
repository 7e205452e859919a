"""Write a development `.env` on first `make run`: random secrets, DEBUG on, nothing to configure.

Run as `python -m config.devenv`. An existing `.env` is never overwritten.
"""

from __future__ import annotations

import base64
import secrets
import sys
from pathlib import Path

ENV_PATH = Path(__file__).resolve().parent.parent / ".env"


def development_env() -> str:
    def whsec() -> str:
        return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()

    return "\n".join(
        [
            "# Development settings written by `make run`. Not for production.",
            "DEBUG=on",
            "SECURE_SSL_REDIRECT=off",
            f"SECRET_KEY={secrets.token_urlsafe(50)}",
            f"PROVISIONING_WEBHOOK_SECRET={whsec()}",
            f"STRIPE_WEBHOOK_SECRET={whsec()}",
            f"MARKETO_WEBHOOK_TOKEN={secrets.token_urlsafe(32)}",
            "",
        ]
    )


def main() -> int:
    if ENV_PATH.exists():
        print(f"Using {ENV_PATH.name} (delete it to start with fresh development secrets).")
        return 0
    ENV_PATH.write_text(development_env())
    ENV_PATH.chmod(0o600)
    print(f"Wrote {ENV_PATH.name} with development secrets (DEBUG on).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
