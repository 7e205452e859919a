"""`manage.py demo_seed`: the demo's admin, reps and pre-existing accounts (run by `make demo`)."""

from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from emulators.demo import EMAIL_DOMAIN, demo_seed


class Command(BaseCommand):
    help = (
        "Demo data, for the demo's own database only: the superuser 'admin', the reps ann, bo and cy (group "
        "Reps, with alert settings) and the accounts they own, whose domains the simulated traffic uses. "
        f"Users get emails @{EMAIL_DOMAIN} and one password: DEMO_PASSWORD from the environment, else a new "
        "random one, printed. Refuses to run unless DEBUG is on."
    )

    def handle(self, *args, **options) -> None:
        if not settings.DEBUG:
            raise CommandError("demo_seed resets passwords: it runs only with DEBUG on (the demo's settings).")
        password = os.environ.get("DEMO_PASSWORD") or secrets.token_urlsafe(9)
        logins = demo_seed(password=password)
        self.stdout.write(
            f"Demo logins (password {logins.password}): {logins.admin} (admin, sees everything); "
            f"reps {', '.join(logins.reps)} (their own workspaces and alerts)."
        )
