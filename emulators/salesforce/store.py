"""In-memory records with Salesforce's write rules, guarded by one re-entrant lock.

Every write goes through ``_save``: read-only fields, foreign-key external ids, lookup ids, restricted
picklists, e-mail format, required fields, registered validation rules, injected per-record faults
and unique fields are checked in that order, then the record is stored. ``atomic()`` journals writes
so that allOrNone collections and convertLead roll back as a unit.
"""

from __future__ import annotations

import copy
import datetime as dt
import inspect
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from . import ids
from . import schema as s
from .errors import ROLLED_BACK, RequestError, SFError, not_found
from .values import EMAIL_RE, Parsed, parse_body, sf_now

Record = dict[str, Any]
#: Deleting an account deletes these (their AccountId) with it, as Salesforce does.
CASCADE = ("Contact", "Opportunity")
RecordFault = Callable[[int, dict[str, Any]], SFError | None]


@dataclass
class ValidationRule:
    """A Salesforce validation rule: ``predicate(record[, old])`` returning True means the record is invalid."""

    object_name: str
    predicate: Callable[..., bool]
    message: str
    fields: list[str] = field(default_factory=list)
    name: str = ""

    def violated(self, record: Record, old: Record | None) -> bool:
        try:
            arity = len(inspect.signature(self.predicate).parameters)
        except (TypeError, ValueError):  # pragma: no cover - builtins
            arity = 1
        return bool(self.predicate(record, old) if arity >= 2 else self.predicate(record))


class _Rollback(Exception):
    pass


class Store:
    def __init__(self, schema: s.Schema | None = None, *, strict_fields: bool = True) -> None:
        self.schema = schema or s.Schema()
        self.strict_fields = strict_fields
        self.lock = threading.RLock()
        self.ids = ids.IdFactory()
        self.converted_statuses: set[str] = {"Closed - Converted"}
        self.rules: list[ValidationRule] = []
        self._records: dict[str, dict[str, Record]] = {}
        self._index: dict[tuple[str, str], dict[Any, set[str]]] = {}
        self._journals: list[list[tuple[str, str, Record | None]]] = []

    # ------------------------------------------------------------------ test helpers
    def clear(self) -> None:
        with self.lock:
            self._records.clear()
            self._index.clear()
            self.rules.clear()

    def seed(self, object_name: str, **fields: Any) -> str:
        """Store a record as is — no validation, no uniqueness (e.g. to seed duplicate external ids)."""
        obj = self._obj(object_name)
        with self.lock:
            rid = fields.pop("Id", None) or self.ids.new(obj.key_prefix)
            record = self._blank(obj, rid)
            for key, value in fields.items():
                fdef = obj.get_field(key)
                record[fdef.name if fdef else key] = value
            self._finish(obj, record)
            self._put(obj.name, rid, record)
            return rid

    def get(self, object_or_id: str, record_id: str | None = None) -> Record | None:
        """A copy of a live record by ``get(id)`` or ``get("Account", id)``; None if absent or deleted."""
        rid = ids.normalize(record_id or object_or_id)
        if rid is None:
            return None
        with self.lock:
            for records in self._records.values():
                rec = records.get(rid)
                if rec is not None and not rec["IsDeleted"]:
                    return copy.deepcopy(rec)
        return None

    def records(self, object_name: str, *, include_deleted: bool = False) -> list[Record]:
        obj = self._obj(object_name)
        with self.lock:
            return [
                copy.deepcopy(r)
                for r in self._records.get(obj.name, {}).values()
                if include_deleted or not r["IsDeleted"]
            ]

    def find(self, object_name: str, **criteria: Any) -> list[Record]:
        return [r for r in self.records(object_name) if all(r.get(k) == v for k, v in criteria.items())]

    def find_one(self, object_name: str, **criteria: Any) -> Record | None:
        found = self.find(object_name, **criteria)
        if len(found) > 1:
            raise LookupError(f"{len(found)} {object_name} records match {criteria}")
        return found[0] if found else None

    def count(self, object_name: str) -> int:
        return len(self.records(object_name))

    def add_validation_rule(
        self,
        object_name: str,
        predicate: Callable[..., bool],
        message: str,
        fields: list[str] | tuple[str, ...] = (),
        name: str = "",
    ) -> ValidationRule:
        rule = ValidationRule(self._obj(object_name).name, predicate, message, list(fields), name)
        with self.lock:
            self.rules.append(rule)
        return rule

    def remove_validation_rule(self, rule: ValidationRule) -> None:
        with self.lock:
            self.rules.remove(rule)

    # ------------------------------------------------------------------ lookups
    def object_def(self, name: str) -> s.ObjectDef | None:
        return self.schema.get(name)

    def _obj(self, name: str) -> s.ObjectDef:
        obj = self.schema.get(name)
        if obj is None:
            raise KeyError(f"unknown sObject type {name}")
        return obj

    def live(self, object_name: str, rid: str) -> Record | None:
        rec = self._records.get(object_name, {}).get(rid)
        return rec if rec is not None and not rec["IsDeleted"] else None

    def raw(self, object_name: str, rid: str) -> Record | None:
        return self._records.get(object_name, {}).get(rid)

    def all_live(self, object_name: str) -> list[Record]:
        return [r for r in self._records.get(object_name, {}).values() if not r["IsDeleted"]]

    def match_external(self, obj: s.ObjectDef, fdef: s.FieldDef, value: Any) -> list[str]:
        if fdef.name == "Id":
            rid = ids.normalize(value)
            return [rid] if rid and self.live(obj.name, rid) else []
        if value is None:
            return []
        idx = self._index.get((obj.name, fdef.name))
        if idx is not None:
            return sorted(idx.get(value, ()))
        return [r["Id"] for r in self.all_live(obj.name) if r.get(fdef.name) == value]

    def parse(self, obj: s.ObjectDef, body: Any) -> Parsed:
        return parse_body(self.schema, obj, body, strict=self.strict_fields)

    # ------------------------------------------------------------------ storage primitives
    def _blank(self, obj: s.ObjectDef, rid: str) -> Record:
        record: Record = {name: copy.deepcopy(f.default) for name, f in obj.fields.items()}
        now = sf_now()
        record.update(Id=rid, IsDeleted=False, CreatedDate=now, LastModifiedDate=now, SystemModstamp=now)
        if "OwnerId" in obj.fields:
            record["OwnerId"] = ids.USER_ID_18
        return record

    def _finish(self, obj: s.ObjectDef, record: Record) -> None:
        if obj.name in ("Contact", "Lead", "User"):
            record["Name"] = " ".join(p for p in (record.get("FirstName"), record.get("LastName")) if p) or None
        if obj.name_defaults_to_id and not record.get("Name"):
            record["Name"] = record["Id"]

    def _put(self, object_name: str, rid: str, record: Record | None, *, journal: bool = True) -> None:
        table = self._records.setdefault(object_name, {})
        old = table.get(rid)
        if journal and self._journals:
            self._journals[-1].append((object_name, rid, copy.deepcopy(old) if old is not None else None))
        obj = self.schema.get(object_name)
        indexed = [f.name for f in obj.fields.values() if f.external_id and f.name != "Id"] if obj else []
        for name in indexed:
            idx = self._index.setdefault((object_name, name), {})
            if old is not None and not old["IsDeleted"] and old.get(name) is not None:
                idx.get(old[name], set()).discard(rid)
            if record is not None and not record["IsDeleted"] and record.get(name) is not None:
                idx.setdefault(record[name], set()).add(rid)
        if record is None:
            table.pop(rid, None)
        else:
            table[rid] = record

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Journal writes; roll them back if the block raises."""
        with self.lock:
            journal: list[tuple[str, str, Record | None]] = []
            self._journals.append(journal)
            try:
                yield
            except BaseException:
                self._journals.pop()
                for object_name, rid, old in reversed(journal):
                    self._put(object_name, rid, old, journal=False)
                raise
            else:
                self._journals.pop()
                if self._journals:
                    self._journals[-1].extend(journal)

    # ------------------------------------------------------------------ the write path
    def _check_lookup(self, fdef: s.FieldDef, value: Any) -> str | None:
        if value is None:
            return None
        rid = ids.normalize(value)
        targets = [self.schema.get(name) for name in fdef.polymorphic or (fdef.reference_to or "",)]
        target = next((t for t in targets if t is not None and rid and rid.startswith(t.key_prefix)), None)
        if rid is None or target is None:
            raise SFError(
                "FIELD_INTEGRITY_EXCEPTION", f"{fdef.label}: id value of incorrect type: {value}", [fdef.name]
            )
        rec = self.raw(target.name, rid)
        if rec is None:
            raise SFError(
                "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY",
                f"insufficient access rights on cross-reference id: {value}",
            )
        if rec["IsDeleted"]:
            raise SFError("ENTITY_IS_DELETED", "entity is deleted", [fdef.name])
        return rid

    def _save(self, parsed: Parsed, old: Record | None, fault: SFError | None = None) -> tuple[str, bool]:
        """Validate and store one record; returns (id, created). Raises SFError for a record failure."""
        obj = parsed.obj
        if fault is not None:
            raise fault
        if old is not None and obj.name == "Lead" and old.get("IsConverted"):
            raise SFError("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead")
        readonly = [name for name in parsed.values if obj.fields[name].readonly]
        if readonly:
            names = ", ".join(readonly)
            raise SFError(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {names}. Please check the security settings of this field "
                "and verify that it is read/write for your role within Salesforce.",
                readonly,
            )
        values = dict(parsed.values)
        for ref in parsed.refs:
            if ref.lookup.name in values:
                raise SFError(
                    "INVALID_FIELD",
                    f"Cannot specify both an external ID reference {ref.lookup.relationship_name} and a salesforce "
                    f"id, {ref.lookup.name}",
                )
            matches = self.match_external(ref.target, ref.ext_field, ref.value)
            if not matches:
                raise SFError(
                    "INVALID_FIELD",
                    f"Foreign key external ID: {ref.value} not found for field {ref.ext_field.name} "
                    f"in entity {ref.target.name}",
                )
            if len(matches) > 1:
                raise SFError(
                    "INVALID_FIELD",
                    f"Foreign key external ID: {ref.value} matched more than one record for field "
                    f"{ref.ext_field.name} in entity {ref.target.name}",
                )
            values[ref.lookup.name] = matches[0]
        for name, value in list(values.items()):
            fdef = obj.fields[name]
            if fdef.type == s.REFERENCE:
                values[name] = self._check_lookup(fdef, value)
            elif fdef.type == s.ID and value is not None:
                values[name] = ids.normalize(value) or value
            elif fdef.type == s.PICKLIST and fdef.restricted and value is not None and value not in fdef.picklist:
                raise SFError(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{fdef.label}: bad value for restricted picklist field: {value}",
                    [name],
                )
            elif fdef.type == s.EMAIL and value not in (None, "") and not EMAIL_RE.match(value):
                raise SFError("INVALID_EMAIL_ADDRESS", f"{fdef.label}: invalid email address: {value}", [name])
            if fdef.length is not None and isinstance(value, str) and len(value) > fdef.length:
                raise SFError(
                    "STRING_TOO_LONG",
                    f"{fdef.label}: data value too large: {value[:40]} (max length={fdef.length})",
                    [name],
                )
        rid = old["Id"] if old is not None else self.ids.new(obj.key_prefix)
        record = copy.deepcopy(old) if old is not None else self._blank(obj, rid)
        record.update(values)
        missing = [
            f.name
            for f in obj.fields.values()
            if f.required and not f.readonly and (record.get(f.name) is None or record.get(f.name) == "")
        ]
        if missing:
            raise SFError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing)
        for rule in list(self.rules):
            if rule.object_name == obj.name and rule.violated(copy.deepcopy(record), copy.deepcopy(old)):
                raise SFError("FIELD_CUSTOM_VALIDATION_EXCEPTION", rule.message, list(rule.fields))
        for fdef in obj.unique_fields():
            value = record.get(fdef.name)
            if value is None:
                continue
            others = [other for other in self.match_external(obj, fdef, value) if other != rid]
            if others:
                raise SFError(
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {fdef.name} duplicates value on record with id: {others[0]}",
                )
        now = sf_now()
        record["LastModifiedDate"] = record["SystemModstamp"] = now
        self._finish(obj, record)
        self._put(obj.name, rid, record)
        return rid, old is None

    # ------------------------------------------------------------------ single-record operations
    def create(self, object_name: str, body: Any, fault: SFError | None = None) -> str:
        obj = self._obj(object_name)
        with self.lock:
            parsed = self.parse(obj, body)
            if "Id" in parsed.values:
                raise SFError("INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call", ["Id"])
            rid, _ = self._save(parsed, None, fault)
            return rid

    def existing(self, obj: s.ObjectDef, record_id: str) -> Record:
        """The live record for a URL id, or the 404 Salesforce answers."""
        rid = ids.normalize(record_id)
        rec = self.raw(obj.name, rid) if rid and rid.startswith(obj.key_prefix) else None
        if rec is None:
            raise not_found()
        if rec["IsDeleted"]:
            raise RequestError(404, SFError("ENTITY_IS_DELETED", "entity is deleted", status=404))
        return rec

    def update(self, object_name: str, record_id: str, body: Any, fault: SFError | None = None) -> None:
        obj = self._obj(object_name)
        with self.lock:
            parsed = self.parse(obj, body)
            old = self.existing(obj, record_id)
            body_id = parsed.values.pop("Id", None)
            if body_id is not None and ids.normalize(body_id) != old["Id"]:
                raise SFError(
                    "INVALID_ID_FIELD", f"The Id field should not be specified in the sobject data: {body_id}"
                )
            self._save(parsed, old, fault)

    def upsert(
        self, object_name: str, ext_field: str, value: Any, body: Any, fault: SFError | None = None
    ) -> tuple[str, bool, list[str]]:
        """Returns (id, created, matches). More than one match means the caller answers 300."""
        obj = self._obj(object_name)
        with self.lock:
            fdef = self.external_field(obj, ext_field)
            parsed = self.parse(obj, body)
            in_body = parsed.values.get(fdef.name)
            if fdef.name != "Id" and in_body is not None and in_body != value:
                raise SFError(
                    "INVALID_FIELD",
                    f"{fdef.name}: the value in the request body ({in_body}) does not match the value in the URL "
                    f"({value})",
                    [fdef.name],
                )
            matches = self.match_external(obj, fdef, value)
            if len(matches) > 1:
                return "", False, matches
            if fdef.name != "Id":
                parsed.values[fdef.name] = value
            else:
                parsed.values.pop("Id", None)
                if not matches:
                    raise not_found()
            old = self.live(obj.name, matches[0]) if matches else None
            rid, created = self._save(parsed, old, fault)
            return rid, created, matches

    def external_field(self, obj: s.ObjectDef, name: str) -> s.FieldDef:
        fdef = obj.get_field(name)
        if fdef is None:
            raise not_found(f"Provided external ID field does not exist or is not accessible: {name}")
        if not fdef.external_id:
            raise RequestError(
                400,
                SFError(
                    "INVALID_FIELD",
                    f"Field name provided, {fdef.name} is not an External ID or indexed field for {obj.name}",
                ),
            )
        return fdef

    def delete(self, object_name: str, record_id: str) -> None:
        """Move a record to the recycle bin as Salesforce does: an account takes its contacts and
        opportunities with it, and custom lookups (`…__c`) pointing at anything deleted are cleared."""
        obj = self._obj(object_name)
        with self.lock, self.atomic():
            old = self.existing(obj, record_id)
            gone = [(obj.name, old["Id"])]
            if obj.name == "Account":
                gone += [
                    (child, r["Id"]) for child in CASCADE for r in self.all_live(child) if r["AccountId"] == old["Id"]
                ]
            now = sf_now()
            for name, rid in gone:
                record = copy.deepcopy(self._records[name][rid])
                record.update(IsDeleted=True, SystemModstamp=now)
                self._put(name, rid, record)
            self._clear_lookups_to({rid for _, rid in gone}, now)

    def _clear_lookups_to(self, gone: set[str], now: Any) -> None:
        """Clear custom lookups to these deleted ids (their default: "clear the value of this field")."""
        for target in self.schema.objects.values():
            lookups = [
                f.name for f in target.fields.values() if f.reference_to and f.name.endswith("__c") and not f.readonly
            ]
            for record in self.all_live(target.name) if lookups else []:
                cleared = {name: None for name in lookups if record.get(name) in gone}
                if cleared:
                    self._put(target.name, record["Id"], {**record, **cleared, "SystemModstamp": now})

    # ------------------------------------------------------------------ sObject Collections
    def collection(
        self,
        op: str,
        records: list[Any],
        *,
        all_or_none: bool,
        object_name: str | None = None,
        ext_field: str | None = None,
        record_fault: RecordFault | None = None,
    ) -> list[dict[str, Any]]:
        """create / update / upsert up to 200 records; returns SaveResult/UpsertResult dicts in order."""
        with self.lock:
            parsed_all = self._parse_collection(op, records, object_name)
            fdef = self.external_field(parsed_all[0].obj, ext_field or "") if op == "upsert" and parsed_all else None
            results: list[dict[str, Any]] = []
            failed = False
            try:
                with self.atomic():
                    seen: dict[Any, int] = {}
                    if fdef is not None:
                        for p in parsed_all:
                            key = p.values.get(fdef.name)
                            seen[key] = seen.get(key, 0) + 1
                    for index, parsed in enumerate(parsed_all):
                        fault = record_fault(index, parsed.raw) if record_fault else None
                        try:
                            results.append(self._collection_one(op, parsed, fdef, seen, fault))
                        except SFError as err:
                            failed = True
                            result: dict[str, Any] = {"success": False, "errors": [err.record_body()]}
                            if op == "upsert":
                                result["created"] = False
                            results.append(result)
                    if failed and all_or_none:
                        raise _Rollback
            except _Rollback:
                for i, result in enumerate(results):
                    if result["success"]:
                        results[i] = {"success": False, "errors": [ROLLED_BACK.record_body()]}
                        if op == "upsert":
                            results[i]["created"] = False
            return results

    def _parse_collection(self, op: str, records: list[Any], object_name: str | None) -> list[Parsed]:
        parsed_all = []
        for body in records:
            attributes = body.get("attributes") if isinstance(body, dict) else None
            type_name = attributes.get("type") if isinstance(attributes, dict) else None
            if op == "upsert":
                type_name = type_name or object_name
                if type_name is None or (object_name and type_name.lower() != object_name.lower()):
                    raise RequestError(
                        400,
                        SFError("INVALID_TYPE", f"The sObject type {type_name} doesn't match the URL {object_name}"),
                    )
            if not type_name:
                raise RequestError(
                    400, SFError("INVALID_TYPE", "Each record in the collection must have attributes with a type")
                )
            obj = self.schema.get(type_name)
            if obj is None:
                raise RequestError(400, SFError("INVALID_TYPE", f"sObject type '{type_name}' is not supported."))
            parsed_all.append(self.parse(obj, body))
        return parsed_all

    def _collection_one(
        self, op: str, parsed: Parsed, fdef: s.FieldDef | None, seen: dict[Any, int], fault: SFError | None
    ) -> dict[str, Any]:
        obj = parsed.obj
        if op == "create":
            if "Id" in parsed.values:
                raise SFError("INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call", ["Id"])
            with self.atomic():
                rid, _ = self._save(parsed, None, fault)
            return {"id": rid, "success": True, "errors": []}
        if op == "update":
            raw_id = parsed.values.pop("Id", None)
            if raw_id is None:
                raise SFError("MISSING_ARGUMENT", "Id not specified in an update call")
            rid = ids.normalize(raw_id)
            if rid is None or not rid.startswith(obj.key_prefix):
                raise SFError("MALFORMED_ID", f"Record ID: id value of incorrect type: {raw_id}", ["Id"])
            old = self.raw(obj.name, rid)
            if old is None:
                raise SFError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
            if old["IsDeleted"]:
                raise SFError("ENTITY_IS_DELETED", "entity is deleted")
            with self.atomic():
                self._save(parsed, old, fault)
            return {"id": rid, "success": True, "errors": []}
        assert fdef is not None
        key = parsed.values.get(fdef.name)
        if key is None:
            raise SFError("MISSING_ARGUMENT", f"{fdef.name} not specified", [fdef.name])
        if seen.get(key, 0) > 1:
            raise SFError("DUPLICATE_VALUE", f"Duplicate external id specified: {key}", [fdef.name])
        matches = self.match_external(obj, fdef, key)
        if len(matches) > 1:
            raise SFError(
                "DUPLICATE_EXTERNAL_ID",
                f"{fdef.name}: more than one record found for external id field: {matches}",
                [fdef.name],
            )
        if fdef.name == "Id":
            parsed.values.pop("Id", None)
            if not matches:
                raise SFError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
        old = self.live(obj.name, matches[0]) if matches else None
        with self.atomic():
            rid, created = self._save(parsed, old, fault)
        return {"id": rid, "success": True, "errors": [], "created": created}

    def collection_delete(self, record_ids: list[str], *, all_or_none: bool) -> list[dict[str, Any]]:
        with self.lock:
            results: list[dict[str, Any]] = []
            try:
                with self.atomic():
                    for raw_id in record_ids:
                        rid = ids.normalize(raw_id)
                        obj = self.schema.by_prefix(rid[:3]) if rid else None
                        rec = self.raw(obj.name, rid) if obj and rid else None
                        if rec is None:
                            err = SFError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
                        elif rec["IsDeleted"]:
                            err = SFError("ENTITY_IS_DELETED", "entity is deleted")
                        else:
                            self.delete(obj.name, rid)
                            results.append({"id": rid, "success": True, "errors": []})
                            continue
                        results.append({"id": raw_id, "success": False, "errors": [err.record_body()]})
                    if all_or_none and any(not r["success"] for r in results):
                        raise _Rollback
            except _Rollback:
                results = [
                    r if not r["success"] else {"id": r["id"], "success": False, "errors": [ROLLED_BACK.record_body()]}
                    for r in results
                ]
            return results

    # ------------------------------------------------------------------ convertLead
    def convert_lead(
        self,
        lead_id: str,
        *,
        converted_status: str | None,
        account_id: str | None = None,
        contact_id: str | None = None,
        do_not_create_opportunity: bool = False,
        opportunity_name: str | None = None,
        overwrite_lead_source: bool = False,
        fault: SFError | None = None,
    ) -> dict[str, str | None]:
        """Convert one lead; returns accountId/contactId/leadId/opportunityId or raises SFError."""
        with self.lock, self.atomic():
            if fault is not None:
                raise fault
            lid = ids.normalize(lead_id)
            lead = self.raw("Lead", lid) if lid and lid.startswith("00Q") else None
            if lead is None or lead["IsDeleted"]:
                raise SFError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["LeadId"])
            if lead["IsConverted"]:
                raise SFError("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead")
            if not converted_status:
                raise SFError("REQUIRED_FIELD_MISSING", "Required fields are missing: [ConvertedStatus]")
            if converted_status not in self.converted_statuses:
                raise SFError("INVALID_STATUS", f"invalid convertedStatus: {converted_status}")
            account = self._existing_for_convert("Account", account_id) if account_id else None
            contact = self._existing_for_convert("Contact", contact_id) if contact_id else None
            if account is None:
                acc_body = {"Name": lead["Company"], "Website": lead.get("Website"), "Phone": lead.get("Phone")}
                acc_id, _ = self._save(self.parse(self._obj("Account"), acc_body), None)
            else:
                acc_id = account["Id"]
            contact_values = {
                "FirstName": lead.get("FirstName"),
                "LastName": lead.get("LastName"),
                "Email": lead.get("Email"),
                "Phone": lead.get("Phone"),
                "Title": lead.get("Title"),
                "LeadSource": lead.get("LeadSource"),
                "AccountId": acc_id,
            }
            if contact is None:
                con_id, _ = self._save(self.parse(self._obj("Contact"), contact_values), None)
            else:
                fill = {k: v for k, v in contact_values.items() if contact.get(k) in (None, "") and v is not None}
                if overwrite_lead_source and lead.get("LeadSource"):
                    fill["LeadSource"] = lead["LeadSource"]
                con_id, _ = self._save(self.parse(self._obj("Contact"), fill), contact)
            opp_id = None
            if not do_not_create_opportunity:
                opp_body = {
                    "Name": opportunity_name or f"{lead['Company']}-",
                    "StageName": "Prospecting",
                    "CloseDate": (dt.date.today() + dt.timedelta(days=30)).isoformat(),
                    "AccountId": acc_id,
                }
                opp_id, _ = self._save(self.parse(self._obj("Opportunity"), opp_body), None)
            converted = copy.deepcopy(lead)
            converted.update(
                IsConverted=True,
                Status=converted_status,
                ConvertedDate=dt.date.today().isoformat(),
                ConvertedAccountId=acc_id,
                ConvertedContactId=con_id,
                ConvertedOpportunityId=opp_id,
                LastModifiedDate=sf_now(),
            )
            self._put("Lead", lid, converted)
            return {"accountId": acc_id, "contactId": con_id, "leadId": lid, "opportunityId": opp_id}

    def _existing_for_convert(self, object_name: str, raw_id: str) -> Record:
        obj = self._obj(object_name)
        rid = ids.normalize(raw_id)
        rec = self.raw(object_name, rid) if rid and rid.startswith(obj.key_prefix) else None
        if rec is None or rec["IsDeleted"]:
            raise SFError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [f"{object_name}Id"])
        return rec
