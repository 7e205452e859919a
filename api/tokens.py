"""Read API tokens: a lifetime, revocation, and API service accounts.

A token (DRF's `authtoken`, one per user) is refused once it is older than API_TOKEN_LIFETIME_DAYS
(401 `token_expired`); a new one replaces it. Revoking deletes it: `manage.py api_token revoke USERNAME`,
or delete it in the admin (Auth Token → Tokens). An API service account is a user in "API services"
(never staff): another system's login to the whole read API, and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import transaction
from django.utils import timezone
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed

from alerts.roles import API_SERVICES_GROUP


def token_expires_at(token: Token) -> datetime | None:
    """When the token stops working; None when API_TOKEN_LIFETIME_DAYS is 0 (tokens never expire)."""
    days = settings.API_TOKEN_LIFETIME_DAYS
    return token.created + timedelta(days=days) if days else None


class ExpiringTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, refusing a token past its lifetime with a code saying so."""

    def authenticate_credentials(self, key: str) -> tuple[AbstractBaseUser, Token]:
        user, token = super().authenticate_credentials(key)
        expires_at = token_expires_at(token)
        if expires_at is not None and expires_at <= timezone.now():
            raise AuthenticationFailed(
                f"This token expired at {expires_at:%Y-%m-%dT%H:%M:%SZ}; ask for a new one.", code="token_expired"
            )
        return user, token


class TokenError(Exception):
    """A token request that cannot be carried out; the message names what is wrong."""


@dataclass(frozen=True)
class IssuedToken:
    username: str
    key: str
    expires_at: datetime | None


def api_token_create(*, username: str, service: bool = False) -> IssuedToken:
    """A fresh token for the user, replacing (revoking) any older one. With `service`, the user is made an
    API service account first, created if missing (no password: it cannot log in to a page)."""
    users = get_user_model().objects
    with transaction.atomic():
        user = users.filter(username=username).first()
        if user is None and service:
            user = users.create_user(username)
        if user is None:
            raise TokenError(f"username: no user named {username!r} (add --service to create a service account).")
        if not user.is_active:
            raise TokenError(f"username: {username!r} is inactive.")
        if service:
            if user.is_staff or user.is_superuser:
                raise TokenError(f"username: {username!r} is staff; a service account must not be.")
            user.groups.add(Group.objects.get_or_create(name=API_SERVICES_GROUP)[0])
        Token.objects.filter(user=user).delete()
        token = Token.objects.create(user=user)
    return IssuedToken(username=username, key=token.key, expires_at=token_expires_at(token))


def api_token_revoke(*, username: str) -> bool:
    """Delete the user's token; True if there was one."""
    deleted, _ = Token.objects.filter(user__username=username).delete()
    return bool(deleted)


@dataclass(frozen=True)
class TokenRow:
    username: str
    created: datetime
    expires_at: datetime | None
    expired: bool
    service: bool


def api_token_list() -> list[TokenRow]:
    """Every token, without its key: whose, made when, expiring when."""
    now = timezone.now()
    rows = []
    for token in Token.objects.select_related("user").prefetch_related("user__groups").order_by("user__username"):
        expires_at = token_expires_at(token)
        service = any(group.name == API_SERVICES_GROUP for group in token.user.groups.all())
        expired = expires_at is not None and expires_at <= now
        rows.append(TokenRow(token.user.get_username(), token.created, expires_at, expired, service))
    return rows
