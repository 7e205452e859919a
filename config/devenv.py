"""Development environment files: the `.env` of `make run`, and the running demo's settings.

`python -m config.devenv` writes a development `.env` on first `make run` (random secrets, DEBUG on,
nothing to configure); an existing `.env` is never overwritten. While `make demo` runs it keeps its
settings in `.demo/running.env`, so a `manage.py` command started beside it (`drf_create_token`,
`replay`, `sign_webhook`) acts on the demo's database with the demo's keys, without exporting anything.
This module imports nothing from Django: settings.py reads it.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path

ENV_PATH = Path(__file__).resolve().parent.parent / ".env"
DEMO_DIR = Path(__file__).resolve().parent.parent / ".demo"
DEMO_ENV_NAME = "running.env"
DEMO_PID_KEY = "DEMO_PID"


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


def demo_env_write(data_dir: Path, overrides: Mapping[str, str], *, pid: int) -> Path:
    """Record the running demo's settings (owner-only file) for commands started beside it."""
    path = data_dir / DEMO_ENV_NAME
    lines = ["# Settings of the running `make demo` (removed when it stops). Not for production."]
    lines += [f"{DEMO_PID_KEY}={pid}"] + [f"{key}={value}" for key, value in sorted(overrides.items())]
    path.touch(mode=0o600)
    path.write_text("\n".join(lines) + "\n")
    return path


def running_demo_env(data_dir: Path = DEMO_DIR) -> tuple[Path, int] | None:
    """The running demo's settings file and pid, or None when no demo runs (a stale file is ignored)."""
    path = data_dir / DEMO_ENV_NAME
    try:
        first = dict(line.split("=", 1) for line in path.read_text().splitlines()[1:2] if "=" in line)
        pid = int(first[DEMO_PID_KEY])
    except (OSError, KeyError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by someone else
    return path, pid


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
