"""Read API for trigger firings (CONTRACT §6 `GET /api/firings/?workspace_id=&trigger=`): what fired, on
which version of which trigger, for which workspace, each action's channel and how its delivery went, and
the explanation it was decided on.

Scoped like the workspaces: a rep reads the firings of the workspaces their rep pages show them; admins,
auditors and API service accounts read every firing; anyone else is refused. A firing that did not fire
(suppressed, or deferred by quiet hours) is listed with `fired_at` null and its `why_not` in the
explanation; `arm` is "holdout" when an experiment held it back.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_view
from rest_framework import generics, serializers

from alerts.selectors import api_workspaces, user_reads_whole_api
from api.workspaces import (
    ERROR_RESPONSE,
    FORBIDDEN,
    INVALID_FILTER_RESPONSE,
    PAGE_NOT_FOUND,
    ReadApiView,
    UTCDateTimeField,
    parse_filters,
)
from messaging.models import Dispatch
from triggers.deliveries import action_key
from triggers.models import Firing
from triggers.selectors import firings_list


def firing_list(*, user: AbstractBaseUser, workspace_id: str = "", trigger: str = "") -> QuerySet[Firing]:
    """The user's visible firings matching the filters given, newest first."""
    firings = firings_list(workspace_key=workspace_id, trigger_key=trigger)
    if not user_reads_whole_api(user):
        firings = firings.filter(workspace_key__in=api_workspaces(user).values("workspace_id"))
    return firings


class FiringActionSerializer(serializers.Serializer):
    channel = serializers.CharField()
    status = serializers.CharField(
        help_text="The delivery's status (pending, sent, failed, dead, skipped) once planned; before that the "
        "firing's: planned, deferred (quiet hours) or suppressed."
    )


class FiringSerializer(serializers.Serializer):
    id = serializers.CharField(source="pk")
    trigger = serializers.CharField(source="trigger.key")
    trigger_version = serializers.IntegerField()
    workspace_id = serializers.CharField(source="workspace_key")
    fired_at = UTCDateTimeField(allow_null=True, help_text="Null when it did not fire (suppressed or deferred).")
    arm = serializers.CharField(allow_null=True, help_text='"holdout" when an experiment held it back.')
    actions = serializers.SerializerMethodField()
    explanation = serializers.DictField(help_text="Events, counts, values, thresholds and caps it was decided on.")

    @extend_schema_field(FiringActionSerializer(many=True))
    def get_actions(self, firing: Firing) -> list[dict[str, Any]]:
        """Each action's channel, with its dispatch's status once there is one (read for the page at once)."""
        statuses: dict[str, str] = self.context.get("dispatch_statuses", {})
        return [
            {"channel": action["channel"], "status": statuses.get(action_key(firing.pk, action["channel"], index),
                                                                 action.get("status", ""))}
            for index, action in enumerate(firing.actions)
        ]  # fmt: skip


class FiringFilterSerializer(serializers.Serializer):
    workspace_id = serializers.CharField(max_length=64, required=False)
    trigger = serializers.SlugField(max_length=64, required=False, help_text="The trigger's key.")


@extend_schema_view(
    get=extend_schema(
        summary="List trigger firings, newest first",
        parameters=[FiringFilterSerializer],
        responses={
            200: FiringSerializer(many=True),
            400: INVALID_FILTER_RESPONSE,
            401: ERROR_RESPONSE,
            403: FORBIDDEN,
            404: PAGE_NOT_FOUND,
        },
    )
)
class FiringListView(ReadApiView, generics.ListAPIView):
    """Firings with why they fired and how each action's delivery went; a rep sees only their workspaces'."""

    serializer_class = FiringSerializer

    def get_queryset(self) -> QuerySet[Firing]:
        return firing_list(user=self.request.user, **parse_filters(FiringFilterSerializer, self.request))

    def get_serializer(self, *args: Any, **kwargs: Any) -> serializers.BaseSerializer:
        """The page's dispatch statuses in one query, whatever the page size."""
        page = args[0] if args else None
        if page is not None:
            ids = [firing.pk for firing in page]
            rows = Dispatch.objects.filter(source="firing", source_id__in=ids).values_list("key", "status")
            kwargs["context"] = {**self.get_serializer_context(), "dispatch_statuses": dict(rows)}
        return super().get_serializer(*args, **kwargs)
