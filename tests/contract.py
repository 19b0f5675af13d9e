"""The event contract as tests see it: docs/asyncapi.yaml's JSON Schemas, applied per type."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

ASYNCAPI = Path(__file__).resolve().parents[1] / "docs" / "asyncapi.yaml"


@cache
def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(ASYNCAPI.read_text())
    return doc


@cache
def _validator(name: str) -> Draft202012Validator:
    doc = _doc()
    registry: Registry[Any] = Registry().with_resource(
        "asyncapi", Resource.from_contents(doc, default_specification=_spec()))
    schema = {"$ref": f"asyncapi#/components/schemas/{name}"}
    return Draft202012Validator(schema, registry=registry, format_checker=FormatChecker())


def _spec() -> Any:
    from referencing.jsonschema import DRAFT202012
    return DRAFT202012


def schema_names() -> set[str]:
    return set(_doc()["components"]["schemas"])


def validate_event(body: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError unless `body` fits the schema of its type."""
    name = body.get("type", "")
    if name == "presence.occupancy" or name not in schema_names():
        name = "presence.occupancy" if name == "presence.occupancy" else "CloudEvent"
        if body.get("type") not in schema_names() and body.get("type") != "presence.occupancy":
            raise AssertionError(f"event type {body.get('type')!r} is not in docs/asyncapi.yaml")
    _validator(name).validate(body)


def validate_status(body: dict[str, Any]) -> None:
    _validator("status").validate(body)
