"""Read API for the event cache (CONTRACT §6): what arrived and what became of it, never the payload."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, serializers

from alerts.selectors import api_events
from api.workspaces import (
    ERROR_RESPONSE,
    FORBIDDEN,
    INVALID_FILTER_RESPONSE,
    PAGE_NOT_FOUND,
    ApiModelSerializer,
    ReadApiView,
    UTCDateTimeField,
    parse_filters,
)
from events.models import Event


def event_list(
    *, user: AbstractBaseUser, workspace_id: str | None = None, status: str | None = None
) -> QuerySet[Event]:
    """The events the user may see (a rep: their workspaces' timelines) matching every filter given, newest first."""
    events = api_events(user)
    if workspace_id is not None:
        events = events.filter(workspace_key=workspace_id)
    if status is not None:
        events = events.filter(status=status)
    # Payloads can be large and hold personal data: never loaded, so never shown.
    return events.defer("payload").order_by("-received_at", "-id")


class EventSerializer(ApiModelSerializer):
    id = serializers.CharField(source="pk", read_only=True)
    timestamp = UTCDateTimeField(
        source="occurred_at", read_only=True, allow_null=True, help_text="When it happened (orders the fold)."
    )
    workspace_id = serializers.CharField(source="workspace_key", read_only=True)

    class Meta:
        model = Event
        fields = [
            "id", "source", "type", "timestamp", "received_at", "status", "retry_count", "notes",
            "external_id", "workspace_id",
        ]  # fmt: skip
        read_only_fields = fields


class EventFilterSerializer(serializers.Serializer):
    workspace_id = serializers.CharField(max_length=64, required=False)
    status = serializers.ChoiceField(choices=Event.Status.choices, required=False)


@extend_schema_view(
    get=extend_schema(
        summary="List events, newest first",
        parameters=[EventFilterSerializer],
        responses={
            200: EventSerializer(many=True),
            400: INVALID_FILTER_RESPONSE,
            401: ERROR_RESPONSE,
            403: FORBIDDEN,
            404: PAGE_NOT_FOUND,
        },
    )
)
class EventListView(ReadApiView, generics.ListAPIView):
    """Received events, newest first, with their processing status; payloads are never shown. A rep sees
    the lifecycle and billing events of their own workspaces, as on their workspace pages."""

    serializer_class = EventSerializer

    def get_queryset(self) -> QuerySet[Event]:
        return event_list(user=self.request.user, **parse_filters(EventFilterSerializer, self.request))
