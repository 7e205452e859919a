"""`manage.py api_token create|revoke|list`: read API tokens and service accounts (api/tokens.py)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from api.tokens import TokenError, api_token_create, api_token_list, api_token_revoke


class Command(BaseCommand):
    help = (
        "Read API tokens. 'create USERNAME' prints a new token (revoking the user's old one); with --service the "
        "user becomes an API service account (created if missing), which reads the whole read API. 'revoke "
        "USERNAME' deletes the user's token. 'list' shows every token's user, age and expiry, never the keys. "
        "Tokens expire after API_TOKEN_LIFETIME_DAYS."
    )

    def add_arguments(self, parser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="Print a new token for USERNAME.")
        create.add_argument("username")
        create.add_argument("--service", action="store_true", help="Make (or create) USERNAME an API service account.")
        revoke = actions.add_parser("revoke", help="Delete USERNAME's token.")
        revoke.add_argument("username")
        actions.add_parser("list", help="Every token's user, creation and expiry.")

    def handle(self, *args, action: str, **options) -> None:
        if action == "create":
            self._create(options["username"], service=options["service"])
        elif action == "revoke":
            if not api_token_revoke(username=options["username"]):
                raise CommandError(f"username: {options['username']!r} has no token.")
            self.stdout.write(f"Revoked the token of {options['username']}.")
        else:
            for row in api_token_list():
                expiry = f"{row.expires_at:%Y-%m-%d %H:%M}Z" if row.expires_at else "never"
                state = "EXPIRED" if row.expired else "valid"
                kind = "service" if row.service else "user"
                created = f"{row.created:%Y-%m-%d %H:%M}Z"
                self.stdout.write(f"{row.username}\t{kind}\tcreated {created}\texpires {expiry}\t{state}")

    def _create(self, username: str, *, service: bool) -> None:
        try:
            issued = api_token_create(username=username, service=service)
        except TokenError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(issued.key)
        expiry = f"{issued.expires_at:%Y-%m-%d %H:%M}Z" if issued.expires_at else "never"
        self.stderr.write(f"Token for {issued.username}; expires {expiry}. Shown once: store it now.")
