"""The org's object model: the standard and custom fields the engine writes (CONTRACT §7).

Tests may add objects or fields (``schema.add_field``) before writing records.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Field types the emulator checks values against.
STRING, EMAIL, URL, PICKLIST, TEXTAREA, PHONE = "string", "email", "url", "picklist", "textarea", "phone"
BOOLEAN, DOUBLE, CURRENCY, INT = "boolean", "double", "currency", "int"
DATE, DATETIME, REFERENCE, ID = "date", "datetime", "reference", "id"
TEXT_TYPES = {STRING, EMAIL, URL, PICKLIST, TEXTAREA, PHONE}


@dataclass
class FieldDef:
    name: str
    type: str = STRING
    label: str = ""
    required: bool = False  # nillable=false and createable: REQUIRED_FIELD_MISSING when absent
    external_id: bool = False  # usable as an upsert key / foreign key reference
    unique: bool = False  # DUPLICATE_VALUE when another record holds the value
    readonly: bool = False  # INVALID_FIELD_FOR_INSERT_UPDATE when written
    reference_to: str | None = None
    relationship_name: str | None = None
    # A polymorphic lookup (a Task's WhatId, WhoId): every object it may point at, `reference_to` first. An
    # external-ID reference through it must name its object in `attributes.type`, as Salesforce requires.
    polymorphic: tuple[str, ...] = ()
    picklist: tuple[str, ...] = ()
    restricted: bool = False  # restricted picklist
    default: object = None
    length: int | None = None  # text fields: STRING_TOO_LONG beyond this many characters

    def __post_init__(self) -> None:
        if not self.label:
            self.label = self.name.removesuffix("__c").replace("_", " ")
        if self.length is None and self.type in TEXT_TYPES:
            self.length = {EMAIL: 80, PHONE: 40}.get(self.type, 255)


@dataclass
class ObjectDef:
    name: str
    key_prefix: str
    fields: dict[str, FieldDef] = field(default_factory=dict)
    name_defaults_to_id: bool = False  # custom objects: Name is the Id when not given

    def __post_init__(self) -> None:
        self._lower = {name.lower(): f for name, f in self.fields.items()}
        self._rel = {f.relationship_name.lower(): f for f in self.fields.values() if f.relationship_name is not None}

    def add_field(self, fdef: FieldDef) -> None:
        self.fields[fdef.name] = fdef
        self.__post_init__()

    def get_field(self, name: str) -> FieldDef | None:
        return self._lower.get(name.lower())

    def relationship(self, name: str) -> FieldDef | None:
        return self._rel.get(name.lower())

    def unique_fields(self) -> list[FieldDef]:
        return [f for f in self.fields.values() if f.unique]


def _system_fields() -> list[FieldDef]:
    return [
        FieldDef("Id", ID, label="Record ID", readonly=True, external_id=True),
        FieldDef("IsDeleted", BOOLEAN, readonly=True, default=False),
        FieldDef("CreatedDate", DATETIME, readonly=True),
        FieldDef("LastModifiedDate", DATETIME, readonly=True),
        FieldDef("SystemModstamp", DATETIME, readonly=True),
        FieldDef("OwnerId", ID, label="Owner ID"),
    ]


def _engine_id() -> FieldDef:
    return FieldDef("Lifecycle_Engine_ID__c", STRING, label="Lifecycle Engine ID", external_id=True, unique=True)


def _obj(name: str, prefix: str, fields: list[FieldDef], **kw: bool) -> ObjectDef:
    return ObjectDef(name, prefix, {f.name: f for f in [*_system_fields(), *fields]}, **kw)


LEAD_STATUSES = ("Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted")
TASK_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")


def default_objects() -> dict[str, ObjectDef]:
    objects = [
        _obj(
            "Account",
            "001",
            [
                FieldDef("Name", STRING, label="Account Name", required=True),
                FieldDef("Website", URL),
                FieldDef("Domain__c", STRING, label="Domain"),
                FieldDef("Phone", PHONE),
                FieldDef("Industry", PICKLIST),
                FieldDef("Type", PICKLIST, label="Account Type"),
                FieldDef("Description", TEXTAREA, length=32000),
                _engine_id(),
            ],
        ),
        _obj(
            "Contact",
            "003",
            [
                FieldDef("FirstName", STRING, label="First Name", length=40),
                FieldDef("LastName", STRING, label="Last Name", required=True, length=80),
                FieldDef("Name", STRING, label="Full Name", readonly=True),
                FieldDef("Email", EMAIL),
                FieldDef("Phone", PHONE),
                FieldDef("Title", STRING, length=128),
                FieldDef("LeadSource", PICKLIST, label="Lead Source"),
                FieldDef("Description", TEXTAREA, length=32000),
                FieldDef(
                    "AccountId", REFERENCE, label="Account ID", reference_to="Account", relationship_name="Account"
                ),
                _engine_id(),
            ],
        ),
        _obj(
            "Lead",
            "00Q",
            [
                FieldDef("FirstName", STRING, label="First Name", length=40),
                FieldDef("LastName", STRING, label="Last Name", required=True, length=80),
                FieldDef("Name", STRING, label="Full Name", readonly=True),
                FieldDef("Company", STRING, required=True),
                FieldDef("Email", EMAIL),
                FieldDef("Phone", PHONE),
                FieldDef("Title", STRING, length=128),
                FieldDef("Website", URL),
                FieldDef("LeadSource", PICKLIST, label="Lead Source"),
                FieldDef(
                    "Status", PICKLIST, label="Lead Status", picklist=LEAD_STATUSES, default="Open - Not Contacted"
                ),
                FieldDef("Description", TEXTAREA, length=32000),
                FieldDef("IsConverted", BOOLEAN, label="Converted", readonly=True, default=False),
                FieldDef("ConvertedDate", DATE, readonly=True),
                FieldDef(
                    "ConvertedAccountId",
                    REFERENCE,
                    readonly=True,
                    reference_to="Account",
                    relationship_name="ConvertedAccount",
                ),
                FieldDef(
                    "ConvertedContactId",
                    REFERENCE,
                    readonly=True,
                    reference_to="Contact",
                    relationship_name="ConvertedContact",
                ),
                FieldDef(
                    "ConvertedOpportunityId",
                    REFERENCE,
                    readonly=True,
                    reference_to="Opportunity",
                    relationship_name="ConvertedOpportunity",
                ),
                _engine_id(),
            ],
        ),
        _obj(
            "Opportunity",
            "006",
            [
                FieldDef("Name", STRING, required=True, length=120),
                FieldDef("StageName", PICKLIST, label="Stage", required=True),
                FieldDef("CloseDate", DATE, label="Close Date", required=True),
                FieldDef("Amount", CURRENCY),
                FieldDef("AccountId", REFERENCE, reference_to="Account", relationship_name="Account"),
            ],
        ),
        _obj(
            "User",
            "005",
            [
                FieldDef("Username", STRING, required=True, unique=True, length=80),
                FieldDef("Email", EMAIL, required=True, length=128),
                FieldDef("FirstName", STRING, label="First Name", length=40),
                FieldDef("LastName", STRING, label="Last Name", required=True, length=80),
                FieldDef("Name", STRING, label="Full Name", readonly=True),
                FieldDef("IsActive", BOOLEAN, label="Active", default=True),
            ],
        ),
        # An activity for a user: the engine's upgrade call (CONTRACT §7), upserted by its engine id.
        _obj(
            "Task",
            "00T",
            [
                FieldDef("Subject", STRING, length=255),
                FieldDef("Description", TEXTAREA, label="Comments", length=32000),
                FieldDef("Status", PICKLIST, picklist=TASK_STATUSES, default="Not Started", required=True),
                FieldDef("Priority", PICKLIST, picklist=("High", "Normal", "Low"), default="Normal", required=True),
                FieldDef("ActivityDate", DATE, label="Due Date Only"),
                FieldDef(
                    "WhatId",
                    REFERENCE,
                    label="Related To ID",
                    reference_to="Account",
                    relationship_name="What",
                    polymorphic=("Account", "Opportunity", "Workspace__c"),
                ),
                FieldDef(
                    "WhoId",
                    REFERENCE,
                    label="Name ID",
                    reference_to="Contact",
                    relationship_name="Who",
                    polymorphic=("Contact", "Lead"),
                ),
                FieldDef("OwnerId", REFERENCE, label="Assigned To ID", reference_to="User", relationship_name="Owner"),
                _engine_id(),
            ],
        ),
        _obj(
            "Workspace__c",
            "a00",
            [
                FieldDef("Name", STRING, label="Workspace Name"),
                FieldDef("Workspace_ID__c", STRING, label="Workspace ID", external_id=True, unique=True),
                FieldDef(
                    "Self_Serve_Status__c",
                    PICKLIST,
                    label="Self-Serve Status",
                    picklist=("Trial", "Paid", "Churned"),
                    restricted=True,
                ),
                FieldDef("Trial_Expiration_Date__c", DATE),
                FieldDef("Converted_Date__c", DATE),
                FieldDef("Churn_Date__c", DATE),
                FieldDef("Churn_Reason__c", TEXTAREA),
                FieldDef("Plan__c", STRING),
                FieldDef("MRR__c", CURRENCY, label="MRR"),
                # Unrestricted: stages are the engine's editable data (CONTRACT §8), their keys the values.
                FieldDef(
                    "Lifecycle_Stage__c",
                    PICKLIST,
                    label="Lifecycle Stage",
                    picklist=("onboarding", "activated", "adopted", "expanding", "at_risk", "dormant"),
                ),
                FieldDef("Lead__c", REFERENCE, label="Lead", reference_to="Lead", relationship_name="Lead__r"),
                FieldDef(
                    "Account__c", REFERENCE, label="Account", reference_to="Account", relationship_name="Account__r"
                ),
                FieldDef(
                    "Contact__c", REFERENCE, label="Contact", reference_to="Contact", relationship_name="Contact__r"
                ),
                _engine_id(),
            ],
            name_defaults_to_id=True,
        ),
    ]
    return {o.name: o for o in objects}


class Schema:
    """All objects, looked up case-insensitively as Salesforce does."""

    def __init__(self, objects: dict[str, ObjectDef] | None = None) -> None:
        self.objects = objects if objects is not None else default_objects()

    def get(self, name: str) -> ObjectDef | None:
        for obj in self.objects.values():
            if obj.name.lower() == name.lower():
                return obj
        return None

    def by_prefix(self, prefix: str) -> ObjectDef | None:
        for obj in self.objects.values():
            if obj.key_prefix == prefix:
                return obj
        return None

    def add_field(self, object_name: str, fdef: FieldDef) -> None:
        obj = self.get(object_name)
        if obj is None:
            raise KeyError(object_name)
        obj.add_field(fdef)

    def add_object(self, obj: ObjectDef) -> None:
        self.objects[obj.name] = obj
