"""The pull API described as OpenAPI 3.1, served at ``/api/v1/openapi.json``.

Written by hand, beside the routes it describes, because the routes are plain Starlette
(no framework generates it); tests/console/district/test_api.py checks that every
path here answers and that every ``/api/v1`` route is here, so the two cannot drift.
The record schema is docs/district-record.schema.json, referenced rather than copied.
"""

from __future__ import annotations

from typing import Any

from console.district.pull import DEFAULT_LIMIT, MAX_LIMIT
from console.district.records import SCHEMA_VERSION
from protocol.topics import NAME_PATTERN

API_VERSION = "1.0.0"

_ERROR = {
    "description": "Refused; ``error`` says why",
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
        }
    },
}


def _page(description: str, next_after: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["schema_version", "records", "next_after", "more"],
                    "properties": {
                        "schema_version": {"const": SCHEMA_VERSION},
                        "records": {
                            "type": "array",
                            "items": {"$ref": "https://gatepost.example/schemas/district-record.schema.json"},
                        },
                        "next_after": {**next_after, "description": "Pass as ``after`` for the next page"},
                        "more": {"type": "boolean", "description": "A full page: ask again at once"},
                    },
                }
            }
        },
    }


_LIMIT = {
    "name": "limit",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
}
_SITE = {
    "name": "site",
    "in": "query",
    "description": "Only this site (one the token covers)",
    "schema": {"type": "string", "pattern": NAME_PATTERN},
}
_SECURED = {
    "security": [{"districtToken": []}],
}
_REFUSALS = {"400": _ERROR, "401": _ERROR, "403": _ERROR}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gatepost console: district pull API",
            "version": API_VERSION,
            "description": "Read-only access for a district's data platform to one compound console's "
            "stored events and hourly flow (docs/district.md).  Records follow "
            f"docs/district-record.schema.json, schema_version {SCHEMA_VERSION}.",
        },
        "components": {
            "securitySchemes": {
                "districtToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token an admin made (gatepost console district-token create)",
                }
            }
        },
        "paths": {
            "/api/v1/events": {
                "get": {
                    "operationId": "listEvents",
                    "summary": "Stored events after a cursor, in the console's ingest order",
                    **_SECURED,
                    "parameters": [
                        {
                            "name": "after",
                            "in": "query",
                            "description": "The ``next_after`` of the previous page; 0 for the start",
                            "schema": {"type": "integer", "minimum": 0, "default": 0},
                        },
                        _LIMIT,
                        _SITE,
                    ],
                    "responses": {"200": _page("A page of event records", {"type": "integer"}), **_REFUSALS},
                }
            },
            "/api/v1/flow": {
                "get": {
                    "operationId": "listFlow",
                    "summary": "Entries, exits and denials per gate per hour",
                    **_SECURED,
                    "parameters": [
                        {
                            "name": "start",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string", "format": "date-time"},
                        },
                        {
                            "name": "end",
                            "in": "query",
                            "description": "Exclusive; default now",
                            "schema": {"type": "string", "format": "date-time"},
                        },
                        {
                            "name": "after",
                            "in": "query",
                            "description": "The ``next_after`` of the previous page (hour/site/gate)",
                            "schema": {"type": "string"},
                        },
                        _LIMIT,
                        _SITE,
                    ],
                    "responses": {"200": _page("A page of flow records", {"type": "string"}), **_REFUSALS},
                }
            },
            "/api/v1/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}},
                }
            },
        },
    }
