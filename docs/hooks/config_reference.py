"""Fill the configuration reference from the code: ``<!-- config-reference -->`` in config-reference.md becomes
one table per section of ``maskcls.core.config.Config`` (key, type, default, allowed values, description).

Registered in mkdocs.yml under ``hooks:``; the descriptions are the fields' own (``Field(description=...)``).
"""

from __future__ import annotations

import inspect
import json
import types
from typing import Literal, Union, get_args, get_origin

from pydantic import BaseModel

MARKER = "<!-- config-reference -->"
BOUNDS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))


def on_page_markdown(markdown, page, config, files):
    if MARKER not in markdown:
        return markdown
    from maskcls.core.config import Config

    tables = [section_table(name, field.annotation) for name, field in Config.model_fields.items()]
    return markdown.replace(MARKER, "\n\n".join(tables))


def section_table(section: str, model: type[BaseModel]) -> str:
    doc = inspect.cleandoc(model.__doc__) if model.__doc__ and model.__doc__ != BaseModel.__doc__ else ""
    rows = ["| key | type | default | allowed | description |", "|---|---|---|---|---|"]
    for name, field in model.model_fields.items():
        default = json.dumps(field.get_default(call_default_factory=True))
        cells = (
            f"`{section}.{name}`",
            type_name(field.annotation),
            f"`{default}`",
            allowed(field),
            field.description or "",
        )
        rows.append("| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |")
    return "\n\n".join(part for part in (f"## `{section}`", doc, "\n".join(rows)) if part)


def type_name(annotation) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is Literal:
        return " or ".join(sorted({type(arg).__name__ for arg in args}))
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(arg) for arg in args)
    if origin is tuple:
        return "[" + ", ".join(type_name(arg) for arg in args) + "]"
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(type_name(arg) for arg in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def allowed(field) -> str:
    choices = literal_choices(field.annotation)
    bounds = [
        f"{sign} {getattr(rule, attr)}"
        for rule in field.metadata
        for attr, sign in BOUNDS
        if getattr(rule, attr, None) is not None
    ]
    return ", ".join([f"`{choice}`" for choice in choices] + bounds)


def literal_choices(annotation) -> list:
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    return [choice for arg in get_args(annotation) for choice in literal_choices(arg)]
