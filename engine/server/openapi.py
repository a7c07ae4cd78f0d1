"""The OpenAPI 3.1 document of the HTTP API (served at ``/openapi.json``).

Request schemas are the same objects the handlers validate with (:mod:`engine.server.body`),
so the document cannot drift from what the server accepts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.server.body import ID, MESSAGE_BODY, METADATA, PARSE_BODY, obj
from engine.server.channels.rest import SCHEMA as REST_SCHEMA

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}

BOT_MESSAGE = {
    "type": "object",
    "required": ["recipient_id"],
    "properties": {
        "recipient_id": {"type": "string"},
        "text": {"type": "string"},
        "buttons": {"type": "array", "items": {"type": "object"}},
        "image": {"type": "string"},
        "custom": {"type": "object"},
        "response": {"type": "string"},
    },
}

TURN = {
    "type": "object",
    "required": ["conversation_id", "messages"],
    "properties": {
        "conversation_id": {"type": "string"},
        "turn_id": {"type": "string"},
        "messages": {"type": "array", "items": BOT_MESSAGE},
        "policy": {"type": ["string", "null"]},
        "reason": {"type": ["string", "null"]},
        "active_flow": {"type": ["string", "null"]},
        "latency_ms": {"type": "number"},
        "duplicate": {"type": "boolean"},
    },
}

CID = {"name": "cid", "in": "path", "required": True, "schema": ID}


TURN_ERRORS = (400, 409, 429, 503)
"""A turn: bad input, a conflicting write, the rate limit, a busy conversation or store down."""


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): {"description": "error", "content": {"application/json": {"schema": ERROR}}} for c in codes}


def _json(schema: dict[str, Any], description: str = "ok") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


SECURED: list[dict[str, list[str]]] = [{"bearer": []}]


def document(version: str, intents: Sequence[str] = ()) -> dict[str, Any]:
    """The API of one assistant: ``intents`` (its domain's) are the names trigger_intent accepts."""
    intent_name: dict[str, Any] = (
        {"type": "string", "enum": sorted(intents)}
        if intents
        else {"type": "string", "pattern": "^[A-Za-z_][\\w\\-.]*$", "maxLength": 128}
    )
    return {
        "openapi": "3.1.0",
        "info": {"title": "taiwa", "version": version, "description": "The HTTP API of a taiwa assistant."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/health": {
                "get": {
                    "summary": "Status of each dependency; 200 only when the required ones are up",
                    "responses": {
                        "200": _json({"type": "object"}),
                        "503": _json({"type": "object"}, "a required dependency is down"),
                    },
                }
            },
            "/version": {
                "get": {
                    "summary": "Engine version, model id, revisions",
                    "responses": {"200": _json({"type": "object"})},
                }
            },
            "/webhooks/rest/webhook": {
                "post": {
                    "summary": "Rasa-compatible REST channel",
                    "requestBody": _body(REST_SCHEMA),
                    "responses": {"200": _json({"type": "array", "items": BOT_MESSAGE}), **_errors(*TURN_ERRORS, 413)},
                }
            },
            "/model/parse": {
                "post": {
                    "summary": "What the NLU understands of a text",
                    "security": SECURED,
                    "requestBody": _body(PARSE_BODY),
                    "responses": {"200": _json({"type": "object"}), **_errors(400, 401, 403)},
                }
            },
            "/conversations/{cid}/tracker": {
                "get": {
                    "summary": "A conversation's events and state",
                    "security": SECURED,
                    "parameters": [CID],
                    "responses": {"200": _json({"type": "object"}), **_errors(400, 401, 403, 503)},
                }
            },
            "/conversations/{cid}/messages": {
                "post": {
                    "summary": "Send a user message; run one turn",
                    "security": SECURED,
                    "parameters": [CID],
                    "requestBody": _body(MESSAGE_BODY),
                    "responses": {"200": _json(TURN), **_errors(*TURN_ERRORS, 401, 403)},
                }
            },
            "/conversations/{cid}/trigger_intent": {
                "post": {
                    "summary": "Run one turn as if the user's message had this intent",
                    "security": SECURED,
                    "parameters": [CID],
                    "requestBody": _body(
                        obj(
                            {
                                "name": intent_name,
                                "entities": METADATA,
                            },
                            ("name",),
                        )
                    ),
                    "responses": {"200": _json(TURN), **_errors(*TURN_ERRORS, 401, 403)},
                }
            },
            "/users/{user_id}/data": {
                "delete": {
                    "summary": "Right to deletion: remove the user's conversations (audited)",
                    "security": SECURED,
                    "parameters": [{"name": "user_id", "in": "path", "required": True, "schema": ID}],
                    "responses": {"200": _json({"type": "object"}), **_errors(400, 401, 403, 503)},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "security": SECURED,
                    "responses": {"200": {"description": "text exposition"}, **_errors(401, 403)},
                }
            },
        },
    }
