"""Read API for behaviour (CONTRACT §6): a workspace's profile, and the cohorts with their members.

A workspace's profile is readable by whoever may read the workspace (a rep: their own; elsewhere 404);
cohort member counts count only the workspaces the reader may see. The metrics are evaluated at the
moment of the request; cohorts and stage are as last evaluated (on the workspace's latest event or
sweep), each with when it began.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from alerts.roles import user_is_alerts_admin
from alerts.selectors import api_workspaces, user_reads_whole_api
from api.workspaces import ERROR_RESPONSE, FORBIDDEN, ReadApiView, UTCDateTimeField
from usage.metrics import METRICS, profiles_for
from usage.models import Profile
from usage.selectors import cohort_counts, cohorts_of
from workspaces.models import Workspace


class CohortEntrySerializer(serializers.Serializer):
    key = serializers.CharField()
    entered_at = UTCDateTimeField()


class StageSerializer(serializers.Serializer):
    key = serializers.CharField()
    since = UTCDateTimeField()


class ProfileSerializer(serializers.Serializer):
    workspace_id = serializers.CharField()
    metrics = serializers.DictField(
        child=serializers.FloatField(allow_null=True),
        help_text="Metric name → value now (docs/metrics.md); null when a metric has no value (a trend "
        "without a previous period).",
    )
    cohorts = CohortEntrySerializer(many=True)
    stage = StageSerializer(allow_null=True)
    evaluated_at = UTCDateTimeField(allow_null=True, help_text="When cohorts and stage were last evaluated.")


class CohortSerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    members = serializers.IntegerField(help_text="Workspaces in it now (a rep's token: among theirs).")


class WorkspaceProfileView(ReadApiView):
    """GET /api/workspaces/<workspace_id>/profile/."""

    pagination_class = None
    serializer_class = ProfileSerializer

    @extend_schema(
        summary="A workspace's usage profile, cohorts and lifecycle stage",
        responses={200: ProfileSerializer, 401: ERROR_RESPONSE, 403: FORBIDDEN, 404: ERROR_RESPONSE},
    )
    def get(self, request: Request, workspace_id: str) -> Response:
        try:
            workspace = api_workspaces(request.user).get(workspace_id=workspace_id)
        except Workspace.DoesNotExist:
            raise NotFound("No workspace with this workspace_id.") from None
        return Response(ProfileSerializer(workspace_profile(workspace)).data)


def workspace_profile(workspace: Workspace) -> dict[str, Any]:
    """The CONTRACT §6 profile of one workspace."""
    key = workspace.workspace_id
    metrics = profiles_for([key], now=timezone.now(), zones={key: workspace.timezone or "UTC"}).get(key, {})
    stored = Profile.objects.select_related("stage").filter(workspace_key=key).first()
    stage = None
    if stored is not None and stored.stage is not None:
        stage = {"key": stored.stage.key, "since": stored.stage_since}
    return {
        "workspace_id": key,
        "metrics": {name: metrics.get(name) for name in METRICS},
        "cohorts": cohorts_of([key]).get(key, []),
        "stage": stage,
        "evaluated_at": stored.evaluated_at if stored is not None else None,
    }


class CohortListView(ReadApiView):
    """GET /api/cohorts/."""

    pagination_class = None
    serializer_class = CohortSerializer

    @extend_schema(
        summary="Cohorts with their member counts",
        responses={
            200: CohortSerializer(many=True),
            401: ERROR_RESPONSE,
            403: OpenApiResponse(FORBIDDEN.response, description=FORBIDDEN.description),
        },
    )
    def get(self, request: Request) -> Response:
        whole = user_reads_whole_api(request.user) or user_is_alerts_admin(request.user)
        scope = None if whole else api_workspaces(request.user)
        return Response(CohortSerializer(cohort_counts(scope), many=True).data)
