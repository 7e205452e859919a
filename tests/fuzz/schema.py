"""The published OpenAPI schema as schemathesis fuzzes it.

Schemathesis builds one pytest item per operation when the test module is collected, before any
database exists, so the schema comes from drf-spectacular's generator here; `test_schema.py` checks
it is exactly what /api/schema/ serves to a reader.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.schemas import OpenApiSchema

#: Examples per operation in the fuzzing phase (the examples and coverage phases add their own few): enough
#: to reach every branch the schema describes, few enough that the fuzz suite stays far under 90 s on SQLite.
MAX_EXAMPLES = 30

#: For every fuzz test. The app, the settings and the token are the same for every generated case, so
#: function-scoped fixtures are safe; the database rows a case may leave are what the tests check.
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class EngineApp:
    """The engine's WSGI app, built at its first request, i.e. inside a test: Django's middleware reads
    settings such as SECURE_SSL_REDIRECT (off in tests/conftest.py) when it is built, not at import."""

    def __init__(self) -> None:
        self.handler: WSGIHandler | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if self.handler is None:
            self.handler = WSGIHandler()
        return self.handler(environ, start_response)


#: Every request schemathesis sends, checks' own probes included, goes to the engine in this process.
ENGINE = EngineApp()


def published_schema() -> dict[str, Any]:
    """The schema as /api/schema/?format=json renders it."""
    generated = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(generated))


def fuzz_schema(*, path_regex: str, phases: dict[str, Any] | None = None, **generation: Any) -> OpenApiSchema:
    """The operations under `path_regex`, generated deterministically (the same cases on every run and
    in CI), valid and invalid data alike, with no example database written to disk."""
    config = SchemathesisConfig.from_dict(
        {
            "seed": 20261120,
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
                **generation,
            },
            "phases": phases or {},
        }
    )
    schema = schemathesis.openapi.from_dict(published_schema(), config=config)
    schema.app = ENGINE
    return schema.include(path_regex=path_regex)
