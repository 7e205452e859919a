"""A local Salesforce stand-in for tests and the demo (see ``Emulator``).

It speaks what the engine uses, over real HTTPS on 127.0.0.1, to the real client (simple-salesforce
over ``requests``): the OAuth client-credentials token endpoint, REST sobjects and upsert by external
id, sObject Collections, Composite, a SOQL subset, limits with ``Sforce-Limit-Info``, and the SOAP partner API's
``convertLead`` — with Salesforce's status codes and error bodies, fault injection and a request log.
No Django inside; ``python manage.py salesforce_emulator`` wraps it for the demo.
"""

from .emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Emulator
from .errors import SFError
from .faults import Fault, Faults
from .log import Entry, RequestLog
from .schema import FieldDef, ObjectDef, Schema
from .store import Store, ValidationRule

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "Emulator",
    "Entry",
    "Fault",
    "Faults",
    "FieldDef",
    "ObjectDef",
    "RequestLog",
    "SFError",
    "Schema",
    "Store",
    "ValidationRule",
]
