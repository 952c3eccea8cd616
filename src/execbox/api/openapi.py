"""The OpenAPI schema: request bodies of the routes that read their body by hand.

Routes parse their bodies themselves (``api/bodies.py``: size caps, streaming to disk), so
FastAPI cannot see them. Each such route declares its body with ``openapi_extra`` from
here, and ``install`` adds the models' JSON schemas to the document's components.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

REF = "#/components/schemas/{model}"
_body_models: dict[str, type[BaseModel]] = {}


def json_body(model: type[BaseModel], description: str = "") -> dict[str, Any]:
    """``openapi_extra`` declaring a JSON request body of ``model``."""
    _body_models[model.__name__] = model
    schema = {"$ref": REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "description": description, "content": {"application/json": {"schema": schema}}}}


def multipart_body(fields: dict[str, dict[str, Any]], required: list[str], description: str = "") -> dict[str, Any]:
    schema = {"type": "object", "properties": fields, "required": required}
    return {"requestBody": {"required": True, "description": description,
                            "content": {"multipart/form-data": {"schema": schema}}}}


def raw_body(description: str) -> dict[str, Any]:
    return {"requestBody": {"required": True, "description": description,
                            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}


def install(app: FastAPI) -> None:
    """Generate the schema once, with the hand-parsed bodies' models among its components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, model in _body_models.items():
                body = model.model_json_schema(ref_template=REF, mode="validation")
                for def_name, definition in body.pop("$defs", {}).items():
                    components.setdefault(def_name, definition)
                components[name] = body
            # Invalid requests are answered 400 with the error envelope, never FastAPI's 422.
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            for unused in ("HTTPValidationError", "ValidationError"):
                components.pop(unused, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
