"""Read API for workspaces (CONTRACT §6), and what every read API view shares: who may read, how
query filters are validated, how times look and how errors look.

The field names and shapes here are a public contract: add fields, never rename or drop one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.paginator import Paginator
from django.db import models
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import generics, serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import APIException, NotFound
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler

from alerts.roles import user_has_staff_powers
from alerts.selectors import api_workspaces, user_may_read_api
from api.tokens import ExpiringTokenAuthentication
from usage.selectors import cohorts_of, stages_of
from workspaces.models import Account, Contact, Lead, Workspace
from workspaces.selectors import workspace_list

# --- Shared by every read API view --------------------------------------------------------------


class CanReadApi(BasePermission):
    """Who may read the API (CONTRACT §6): reps and admins, who see what their rep pages show them, and
    auditors and API service accounts, who see everything (alerts/selectors.py). Any other user: 403."""

    message = "This account has no role that may read the API (a rep, an admin, an auditor or a service account)."
    code = "no_api_role"

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        if isinstance(request.auth, Token) and settings.STAFF_TOTP_REQUIRED and user_has_staff_powers(user):
            # A token cannot pass the second factor staff powers need (config/staff_otp.py).
            self.message, self.code = REFUSED_FOR_STAFF, "staff_token_refused"
            return False
        return user_may_read_api(user)


REFUSED_FOR_STAFF = (
    "Tokens of staff and Lifecycle admins are refused while STAFF_TOTP_REQUIRED is on: log in with your "
    "authenticator code, or read through an API service account."
)


class UTCDateTimeField(serializers.DateTimeField):
    """RFC 3339 in UTC ending in "Z" ("2026-11-20T14:03:11Z"; fractions only when the time has them),
    whatever the active time zone or DATETIME_FORMAT."""

    def to_representation(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class ApiModelSerializer(serializers.ModelSerializer):
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.DateTimeField: UTCDateTimeField,
    }


class InvalidFilter(APIException):
    status_code = 400
    default_code = "invalid_filter"

    def __init__(self, fields: dict[str, Any]) -> None:
        super().__init__(detail={"error": "invalid_filter", "fields": fields})


def parse_filters(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    """The query filters, validated by `serializer_class`; an empty value counts as not given."""
    given = {name: value for name, value in request.query_params.items() if value != ""}
    serializer = serializer_class(data=given)
    if not serializer.is_valid():
        raise InvalidFilter(serializer.errors)
    return dict(serializer.validated_data)


MAX_PAGE_SIZE = 200


class ApiPagination(PageNumberPagination):
    """DRF's page numbers, with a bad `page` named like any other filter (400 invalid_filter); a page
    past the last one stays DRF's 404 (PAGE_NOT_FOUND in every list's schema). `page_size` picks 1 to
    MAX_PAGE_SIZE rows a page (default PAGE_SIZE); anything else is a 400 naming it."""

    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request: Request) -> int | None:
        given = request.query_params.get(self.page_size_query_param, "")
        if given == "":
            return self.page_size
        if not (given.isascii() and given.isdigit() and 1 <= int(given) <= self.max_page_size):
            raise InvalidFilter({self.page_size_query_param: [f"A whole number from 1 to {self.max_page_size}."]})
        return int(given)

    def get_page_number(self, request: Request, paginator: Paginator) -> int:
        number = super().get_page_number(request, paginator)
        try:
            number = int(number)
        except (TypeError, ValueError):
            number = 0
        if number < 1:
            raise InvalidFilter({self.page_query_param: ["A page number of 1 or more is required."]})
        return number

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"]["maximum"] = self.max_page_size
        return parameters


def schema_query_filters(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: what parse_filters accepts, said in OpenAPI. An empty value
    counts as not given (allowEmptyValue); a text filter is a trimmed DRF CharField, so it needs a character
    other than white space and refuses NUL characters."""
    for path, item in result.get("paths", {}).items():
        if path.startswith("/api/"):
            for operation in item.values():
                for parameter in operation.get("parameters", []):
                    if parameter.get("in") != "query":
                        continue
                    parameter["allowEmptyValue"] = True
                    schema = parameter.get("schema", {})
                    if schema.get("type") == "string" and "enum" not in schema:
                        schema.setdefault("pattern", r"^[^\x00]*[^\s\x00][^\x00]*$")
    return result


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's answer, with a machine-readable `error` code beside `detail` (as the webhooks answer)."""
    response = exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "error" not in response.data:
        detail = response.data.get("detail")
        response.data = {"error": getattr(detail, "code", None) or "error", **response.data}
    return response


class ReadApiView(generics.GenericAPIView):
    """Base of every read API view: token (answering 401 with WWW-Authenticate; refused once past
    API_TOKEN_LIFETIME_DAYS) or session, read-only."""

    authentication_classes = [ExpiringTokenAuthentication, SessionAuthentication]
    permission_classes = [CanReadApi]
    pagination_class = ApiPagination
    http_method_names = ["get", "head", "options"]

    def get_exception_handler(self) -> Callable[[Exception, dict[str, Any]], Response | None]:
        return api_exception_handler


ERROR_RESPONSE = inline_serializer(
    name="Error", fields={"error": serializers.CharField(), "detail": serializers.CharField()}
)
PAGE_NOT_FOUND = OpenApiResponse(ERROR_RESPONSE, description="A page past the last one.")
FORBIDDEN = OpenApiResponse(
    ERROR_RESPONSE,
    description="The account has no role that may read the API (`no_api_role`), or it is a staff account's "
    "token while STAFF_TOTP_REQUIRED is on (`staff_token_refused`).",
)
INVALID_FILTER_RESPONSE = inline_serializer(
    name="InvalidFilter",
    fields={
        "error": serializers.CharField(help_text='"invalid_filter"'),
        "fields": serializers.DictField(
            child=serializers.ListField(child=serializers.CharField()),
            help_text="Each invalid filter with what is wrong with it.",
        ),
    },
)

# --- Workspaces ---------------------------------------------------------------------------------


class LeadSummarySerializer(ApiModelSerializer):
    id = serializers.CharField(source="pk", read_only=True)
    converted = serializers.BooleanField(read_only=True)

    class Meta:
        model = Lead
        fields = ["id", "email", "converted"]
        read_only_fields = fields


class AccountSummarySerializer(ApiModelSerializer):
    id = serializers.CharField(source="pk", read_only=True)

    class Meta:
        model = Account
        fields = ["id", "name", "domain"]
        read_only_fields = fields


class ContactSummarySerializer(ApiModelSerializer):
    id = serializers.CharField(source="pk", read_only=True)

    class Meta:
        model = Contact
        fields = ["id", "email"]
        read_only_fields = fields


class SalesforceLinkSerializer(serializers.Serializer):
    id = serializers.CharField(read_only=True, help_text="Salesforce record id of the Workspace__c.")
    state = serializers.CharField(read_only=True)
    synced_at = UTCDateTimeField(read_only=True, allow_null=True)


class BehaviourContext:
    """Stages and cohorts of the workspaces a response shows, read in one query each for all of them."""

    def __init__(self, workspaces: list[Workspace]) -> None:
        keys = [workspace.workspace_id for workspace in workspaces]
        self.stages = stages_of(keys)
        self.cohorts = cohorts_of(keys)


class WorkspaceSerializer(ApiModelSerializer):
    email = serializers.CharField(read_only=True, help_text="Owner email, normalised; empty when unknown.")
    mrr = serializers.DecimalField(
        max_digits=12, decimal_places=2, coerce_to_string=True, allow_null=True, read_only=True
    )
    review_reasons = serializers.ListField(child=serializers.CharField(), read_only=True)
    lead = LeadSummarySerializer(read_only=True, allow_null=True)
    account = AccountSummarySerializer(read_only=True, allow_null=True)
    contact = ContactSummarySerializer(read_only=True, allow_null=True)
    salesforce = serializers.SerializerMethodField()
    stage = serializers.SerializerMethodField(help_text="Its lifecycle stage's key; null before its first evaluation.")
    cohorts = serializers.SerializerMethodField(help_text="The keys of the cohorts it is in now.")

    class Meta:
        model = Workspace
        fields = [
            "workspace_id", "name", "status", "email", "plan", "mrr", "trial_expires_at", "converted_at",
            "churned_at", "churn_reason", "needs_review", "review_reasons", "lead", "account", "contact",
            "salesforce", "stage", "cohorts",
        ]  # fmt: skip
        read_only_fields = fields

    def _behaviour(self, workspace: Workspace) -> BehaviourContext:
        """The view reads them for a whole page at once; a serializer used alone reads its own."""
        return self.context.get("behaviour") or BehaviourContext([workspace])

    def get_stage(self, workspace: Workspace) -> str | None:
        return self._behaviour(workspace).stages.get(workspace.workspace_id)

    def get_cohorts(self, workspace: Workspace) -> list[str]:
        return [entry["key"] for entry in self._behaviour(workspace).cohorts.get(workspace.workspace_id, [])]

    @extend_schema_field(SalesforceLinkSerializer(allow_null=True))
    def get_salesforce(self, workspace: Workspace) -> dict[str, Any] | None:
        # Read by attribute so the Salesforce sync lights this up by adding the fields to the model.
        salesforce_id = getattr(workspace, "salesforce_id", "")
        if not salesforce_id:
            return None
        return SalesforceLinkSerializer(
            {
                "id": salesforce_id,
                "state": getattr(workspace, "salesforce_state", ""),
                "synced_at": getattr(workspace, "salesforce_synced_at", None),
            }
        ).data


class WorkspaceFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Workspace.Status.choices, required=False)
    expiring_within_days = serializers.IntegerField(
        min_value=0,
        max_value=3650,
        required=False,
        help_text="Trials whose trial_expires_at lies between now and now + this many days (implies status=trial).",
    )
    needs_review = serializers.BooleanField(required=False)


@extend_schema_view(
    get=extend_schema(
        summary="List workspaces",
        parameters=[WorkspaceFilterSerializer],
        responses={
            200: WorkspaceSerializer(many=True),
            400: INVALID_FILTER_RESPONSE,
            401: ERROR_RESPONSE,
            403: FORBIDDEN,
            404: PAGE_NOT_FOUND,
        },
    )
)
class WorkspaceListView(ReadApiView, generics.ListAPIView):
    """Workspaces in workspace_id order, paginated; every filter given must match; a rep's own only."""

    serializer_class = WorkspaceSerializer

    def get_serializer(self, *args: Any, **kwargs: Any) -> WorkspaceSerializer:
        rows = list(args[0]) if args else []
        kwargs.setdefault("context", self.get_serializer_context())["behaviour"] = BehaviourContext(rows)
        return super().get_serializer(rows, *args[1:], **kwargs) if args else super().get_serializer(**kwargs)

    def get_queryset(self) -> models.QuerySet[Workspace]:
        return workspace_list(**parse_filters(WorkspaceFilterSerializer, self.request)) & api_workspaces(
            self.request.user
        )


@extend_schema_view(
    get=extend_schema(
        summary="One workspace, by its workspace_id",
        parameters=[
            OpenApiParameter(
                "workspace_id",
                str,
                OpenApiParameter.PATH,
                description="The provisioning system's workspace id.",
                examples=[OpenApiExample("A workspace", value="ws_8812")],
            )
        ],
        responses={200: WorkspaceSerializer, 401: ERROR_RESPONSE, 403: FORBIDDEN, 404: ERROR_RESPONSE},
    )
)
class WorkspaceDetailView(ReadApiView, generics.RetrieveAPIView):
    """One workspace with its lifecycle state and the lead, account and contact it is linked to; a rep's
    own only."""

    serializer_class = WorkspaceSerializer
    queryset = Workspace.objects.all()  # names the model for the schema; reads go through the selector
    lookup_field = "workspace_id"

    def get_serializer(self, *args: Any, **kwargs: Any) -> WorkspaceSerializer:
        behaviour = BehaviourContext(list(args[:1]))
        kwargs.setdefault("context", self.get_serializer_context())["behaviour"] = behaviour
        return super().get_serializer(*args, **kwargs)

    def get_object(self) -> Workspace:
        # One outside the reader's scope is a 404 like one that does not exist (as on the rep pages).
        try:
            return api_workspaces(self.request.user).get(workspace_id=self.kwargs["workspace_id"])
        except Workspace.DoesNotExist:
            raise NotFound("No workspace with this workspace_id.") from None
