"""Read API for alerts (CONTRACT §6): what fired, for whom, why, and how its deliveries went.

A rep reads only the alerts routed to them and an admin every alert, as on the rep pages; auditors and
API service accounts read every alert; anyone else is refused (alerts/selectors.py decides).
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, serializers

from alerts.models import Alert, Delivery, RuleKey
from alerts.selectors import api_alerts
from api.workspaces import (
    ERROR_RESPONSE,
    FORBIDDEN,
    INVALID_FILTER_RESPONSE,
    PAGE_NOT_FOUND,
    ApiModelSerializer,
    ReadApiView,
    parse_filters,
)


def alert_list(
    *, user: AbstractBaseUser, workspace_id: str | None = None, rule: str | None = None, status: str | None = None
) -> QuerySet[Alert]:
    """The user's visible alerts matching every filter given, newest first, deliveries prefetched."""
    alerts = api_alerts(user)
    if workspace_id is not None:
        alerts = alerts.filter(workspace_key=workspace_id)
    if rule is not None:
        alerts = alerts.filter(rule=rule)
    if status is not None:
        alerts = alerts.filter(status=status)
    return alerts.prefetch_related("deliveries").order_by("-created_at", "-id")


class DeliverySummarySerializer(ApiModelSerializer):
    class Meta:
        model = Delivery
        fields = ["channel", "status", "attempts"]
        read_only_fields = fields


class AlertSerializer(ApiModelSerializer):
    id = serializers.CharField(source="pk", read_only=True)
    workspace_id = serializers.CharField(source="workspace_key", read_only=True, allow_null=True)
    recipient = serializers.SerializerMethodField(help_text="Username of the rep it was routed to; null for admins.")
    deliveries = DeliverySummarySerializer(many=True, read_only=True)

    class Meta:
        model = Alert
        fields = ["id", "rule", "workspace_id", "recipient", "status", "created_at", "reason", "deliveries"]
        read_only_fields = fields

    def get_recipient(self, obj: Alert) -> str | None:
        return obj.recipient.get_username() if obj.recipient_id else None

    def to_representation(self, instance: Alert) -> dict:
        data = super().to_representation(instance)
        data["workspace_id"] = data["workspace_id"] or None
        return data


class AlertFilterSerializer(serializers.Serializer):
    workspace_id = serializers.CharField(max_length=64, required=False)
    rule = serializers.ChoiceField(choices=RuleKey.choices, required=False)
    status = serializers.ChoiceField(choices=Alert.Status.choices, required=False)


@extend_schema_view(
    get=extend_schema(
        summary="List alerts, newest first",
        parameters=[AlertFilterSerializer],
        responses={
            200: AlertSerializer(many=True),
            400: INVALID_FILTER_RESPONSE,
            401: ERROR_RESPONSE,
            403: FORBIDDEN,
            404: PAGE_NOT_FOUND,
        },
    )
)
class AlertListView(ReadApiView, generics.ListAPIView):
    """Alerts with why they fired and how each delivery went; a rep sees only their own."""

    serializer_class = AlertSerializer

    def get_queryset(self) -> QuerySet[Alert]:
        return alert_list(user=self.request.user, **parse_filters(AlertFilterSerializer, self.request))
