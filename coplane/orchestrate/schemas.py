"""The input a paused run waits for: its JSON schema checked, input validated, a form drawn.

The server has only the schema the run recorded (`Model.model_json_schema()`), never the
model, so it validates with a JSON Schema validator. References are resolved only inside
the schema: a schema sent by a flow must never make the server fetch a URL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from referencing import Registry
from referencing.exceptions import Unresolvable

MAX_SCHEMA_BYTES = 64 * 1024

Problem = tuple[list[str | int], str]  # (where in the input, what is wrong)


def _no_remote(uri: str) -> Any:
    raise ValueError(f"{uri}: only references inside the schema (#/...) are allowed")


# A registry that retrieves nothing: a reference outside the schema is an error, not a fetch.
_LOCAL_ONLY: Registry[Any] = Registry(retrieve=_no_remote)  # type: ignore[call-arg]  # attrs field


def _validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema, registry=_LOCAL_ONLY)


def check_schema(schema: Any) -> str | None:
    """Why `schema` cannot describe a run's input, or None."""
    if not isinstance(schema, dict):
        return "must be a JSON object (a JSON schema)"
    if len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
        return f"is larger than {MAX_SCHEMA_BYTES} bytes"
    if schema.get("type", "object") != "object":
        return 'must describe an object ("type": "object")'
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
        # every reference must resolve inside the schema, before any input is checked
        list(_validator(schema).iter_errors({}))
    except (jsonschema.SchemaError, Unresolvable, ValueError) as exc:
        message = getattr(exc, "message", None) or str(exc)
        return f"is not a valid JSON schema: {message.splitlines()[0]}"
    return None


def input_problems(schema: dict[str, Any], value: Any) -> list[Problem]:
    """Each way `value` fails `schema`, located at the field it is about."""
    problems: list[Problem] = []
    for error in _validator(schema).iter_errors(value):
        where: list[str | int] = list(error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            # name the missing field, not its parent
            missing = [m for m in error.validator_value if m not in error.instance]
            where.extend(missing[:1])
        problems.append((where, error.message))
    return problems


@dataclass(frozen=True, slots=True)
class FormField:
    """One control of the resume form, drawn from a top-level property of the schema."""

    name: str
    label: str
    control: str  # text, number, checkbox, select or json
    required: bool
    description: str | None = None
    choices: list[str] = field(default_factory=list)
    default: str = ""


def _resolve(schema: dict[str, Any], prop: dict[str, Any]) -> dict[str, Any]:
    """A property's own schema, following one local `$ref` or a nullable `anyOf`."""
    rest = {k: v for k, v in prop.items() if k not in ("$ref", "anyOf")}
    ref = prop.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return {**schema.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {}), **rest}
    options = prop.get("anyOf")
    if isinstance(options, list):
        kept = [o for o in options if isinstance(o, dict) and o.get("type") != "null"]
        if len(kept) == 1:
            return {**_resolve(schema, kept[0]), **rest}
    return prop


def form_fields(schema: dict[str, Any]) -> list[FormField]:
    """The resume form's controls, one per top-level property, in the schema's order."""
    required = set(schema.get("required", []))
    fields = []
    for name, raw in schema.get("properties", {}).items():
        prop = _resolve(schema, raw if isinstance(raw, dict) else {})
        kind = prop.get("type")
        if isinstance(prop.get("enum"), list):
            control = "select"
        elif kind == "boolean":
            control = "checkbox"
        elif kind in ("integer", "number"):
            control = "number"
        elif kind == "string":
            control = "text"
        else:
            control = "json"  # objects, arrays, unions: typed as JSON
        default = prop.get("default")
        shown = "" if default is None else default
        fields.append(
            FormField(
                name=name,
                label=str(prop.get("title") or name),
                control=control,
                required=name in required,
                description=prop.get("description"),
                choices=[str(c) for c in prop.get("enum", [])],
                default=shown if isinstance(shown, str) else json.dumps(shown),
            )
        )
    return fields


def input_from_form(
    schema: dict[str, Any], form: dict[str, str]
) -> tuple[dict[str, Any], list[Problem]]:
    """Typed input from the form's text values; problems for values that cannot be typed."""
    value: dict[str, Any] = {}
    problems: list[Problem] = []
    props = schema.get("properties", {})
    for f in form_fields(schema):
        prop = _resolve(schema, props.get(f.name, {}))
        text = form.get(f.name)
        if f.control == "checkbox":
            value[f.name] = text is not None
            continue
        if text is None or text == "":
            continue  # left empty: the schema says whether it was needed
        if f.control == "select":
            chosen = [c for c in prop.get("enum", []) if str(c) == text]
            value[f.name] = chosen[0] if chosen else text
        elif f.control == "number":
            try:
                number = float(text)
            except ValueError:
                problems.append(([f.name], f"{text!r} is not a number"))
                continue
            value[f.name] = (
                int(number) if prop.get("type") == "integer" and number.is_integer() else number
            )
        elif f.control == "json":
            try:
                value[f.name] = json.loads(text)
            except ValueError as exc:
                problems.append(([f.name], f"is not valid JSON: {exc}"))
        else:
            value[f.name] = text
    return value, problems


def typed_value(schema: dict[str, Any] | None, name: str, text: str) -> Any:
    """A `name=text` value from the command line, typed by the property's schema when it is
    a string (kept as written) and read as JSON otherwise (numbers, true, lists)."""
    prop = _resolve(schema or {}, (schema or {}).get("properties", {}).get(name, {}))
    if prop.get("type") == "string":
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text
