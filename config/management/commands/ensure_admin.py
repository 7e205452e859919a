"""`manage.py ensure_admin`: create a first superuser when there is none, and say how to log in."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the superuser 'admin' with a random password if no superuser exists yet, and print how "
        "to log in. Does nothing when a superuser exists (reset a password with `manage.py changepassword`)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default="admin", help="Username for the new superuser (default admin).")
        parser.add_argument("--url", default="http://127.0.0.1:8000/admin/", help="Admin address to print.")

    def handle(self, *args, username: str, url: str, **options) -> None:
        users = get_user_model().objects
        if users.filter(is_superuser=True).exists():
            self.stdout.write(f"Admin: log in at {url} (forgot the password? manage.py changepassword <user>)")
            return
        password = secrets.token_urlsafe(12)
        users.create_superuser(username=username, email="", password=password)
        self.stdout.write(
            self.style.SUCCESS(f"Created superuser. Log in at {url} as {username} / {password}")
            + "\n(shown once; change it with: .venv/bin/python manage.py changepassword "
            + f"{username})"
        )
