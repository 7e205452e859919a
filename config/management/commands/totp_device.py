"""`manage.py totp_device USERNAME`: give a user with staff powers a TOTP device (for STAFF_TOTP_REQUIRED)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django_otp.plugins.otp_totp.models import TOTPDevice

from alerts.roles import user_has_staff_powers


class Command(BaseCommand):
    help = (
        "Create a TOTP device for a staff user or Lifecycle admin and print its otpauth:// address: paste it into an "
        "authenticator app (or turn it into a QR code). With STAFF_TOTP_REQUIRED on, the admin and the rep login then "
        "ask for the app's code. "
        "Devices can also be added, listed and removed in the admin under 'TOTP devices'."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="authenticator", help="A name for the device (default: authenticator).")

    def handle(self, *args, username: str, name: str, **options) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"username: no user named {username!r}.")
        if not user_has_staff_powers(user):
            raise CommandError(f"username: {username!r} is neither staff nor a Lifecycle admin; reps need no device.")
        device = TOTPDevice.objects.create(user=user, name=name, confirmed=True)
        self.stdout.write(device.config_url)
