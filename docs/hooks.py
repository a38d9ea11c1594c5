"""MkDocs hooks: the CLI and HTTP API references are generated from the code at build time.

A page holding `<!-- reference: cli -->` gets every command of the typer app, with its help,
arguments and options; `<!-- reference: http -->` gets every operation of the app's OpenAPI
schema. Nothing of either is typed by hand, so the reference cannot fall behind the code.
"""

from __future__ import annotations

from typing import Any

import typer.main

CLI_MARKER = "<!-- reference: cli -->"
HTTP_MARKER = "<!-- reference: http -->"
METHODS = ("get", "post", "put", "patch", "delete", "head")


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Expand the reference markers of a page."""
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    if HTTP_MARKER in markdown:
        markdown = markdown.replace(HTTP_MARKER, http_reference())
    return markdown


def cli_reference() -> str:
    """Markdown for every `coplane` command, groups first-level sections."""
    from coplane.cli import app

    root = typer.main.get_command(app)
    parts: list[str] = []
    for name, command in _commands(root, "coplane"):
        parts.append(_command_markdown(name, command))
    return "\n".join(parts)


# typer builds on its own copy of click: the commands are read by what they have, not by class
def _commands(group: Any, prefix: str) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for name, command in getattr(group, "commands", {}).items():
        full = f"{prefix} {name}"
        if hasattr(command, "commands"):
            found += _commands(command, full)
        else:
            found.append((full, command))
    return found


def _command_markdown(name: str, command: Any) -> str:
    ctx = command.context_class(command, info_name=name)
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines = [f"### `{name}`", "", command.help or "", "", "```text", f"{name} {usage}", "```"]
    rows = []
    for param in command.get_params(ctx):
        if param.name == "help":
            continue
        if param.param_type_name == "option":
            spelled = ", ".join(f"`{o}`" for o in param.opts + param.secondary_opts)
        else:
            spelled = f"`{(param.metavar or param.name or '').upper()}`"
        default = param.default
        shown = "" if default in (None, False, ()) or callable(default) else f"`{default}`"
        required = "yes" if param.required else ""
        text = _escape(getattr(param, "help", None) or "")
        envvar = getattr(param, "envvar", None)
        if envvar:
            text += f" (`{envvar}`)"
        rows.append(f"| {spelled} | {text} | {shown} | {required} |")
    if rows:
        lines += ["", "| argument or option | meaning | default | required |"]
        lines += ["| --- | --- | --- | --- |"]
        lines += rows
    return "\n".join(lines) + "\n"


def http_reference() -> str:
    """Markdown for every operation in the OpenAPI schema, by path."""
    from coplane.server import create_app

    schema = create_app().openapi()
    parts: list[str] = []
    for path, operations in sorted(schema["paths"].items()):
        for method in METHODS:
            operation = operations.get(method)
            if operation is None:
                continue
            parts.append(_operation_markdown(method, path, operation))
    return "\n".join(parts)


def _operation_markdown(method: str, path: str, operation: dict[str, Any]) -> str:
    lines = [f"### `{method.upper()} {path}`", ""]
    summary = operation.get("summary")
    if summary:
        lines += [f"**{summary}.**", ""]
    description = operation.get("description")
    if description and description.strip() != summary:
        lines += [description.strip(), ""]
    parameters = operation.get("parameters", [])
    if parameters:
        lines += ["| parameter | in | required | type |", "| --- | --- | --- | --- |"]
        for p in parameters:
            kind = _type_of(p.get("schema", {}))
            required = "yes" if p.get("required") else ""
            lines.append(f"| `{p['name']}` | {p['in']} | {required} | {kind} |")
        lines.append("")
    responses = operation.get("responses", {})
    if responses:
        answers = ", ".join(
            f"`{code}` {_escape(str(r.get('description', '')))}" for code, r in responses.items()
        )
        lines += [f"Answers: {answers}.", ""]
    return "\n".join(lines)


def _type_of(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return " or ".join(_type_of(s) for s in schema["anyOf"] if s.get("type") != "null")
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    kind = str(schema.get("type", ""))
    if kind == "array":
        return f"list of {_type_of(schema.get('items', {}))}"
    return kind


def _escape(text: str) -> str:
    """Text safe inside a Markdown table cell: no pipes, one line."""
    return " ".join(text.replace("|", "\\|").split())
