"""Typed reports and the one function that renders any of them — for the screen, Markdown and JSON.

A report is a dataclass (subclass of :class:`Report`); its fields are the JSON document scripts read
(``Finished.report`` in ``--json`` output, the drill's saved ``.json``), so field names are an interface:
add, rename none.  A field whose JSON name is not a Python name (``from``) says so in its metadata
(``field(metadata={"json": "from"})``); ``{"omit_empty": True}`` leaves an empty value out.

What a person reads comes from :meth:`Report.sections`: tables, facts and text blocks, rendered as aligned
text (the runner screen, headless output) or Markdown (the saved drill report).  ``full=False`` is the
short form printed at the end of a headless run; Markdown is always the full one.  Plain dicts (the
reports of the smaller actions) render as their facts.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal


@dataclass(frozen=True)
class Table:
    title: str
    headers: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]


@dataclass(frozen=True)
class Facts:
    title: str
    items: list[tuple[str, str]]


@dataclass(frozen=True)
class Block:
    title: str
    body: str
    code: str | None = None  # a fenced block in Markdown (its language), plain text otherwise


Section = Table | Facts | Block


class Report:
    """Base of the typed reports (each a dataclass)."""

    kind: ClassVar[str] = "report"

    def headline(self) -> str:
        return ""

    def document(self) -> Any:
        """The JSON document: the dataclass's fields by their JSON names."""
        return _fields(self)

    def sections(self, full: bool) -> list[Section]:
        return [Facts("", _facts(self.document()))] if full else []


def _fields(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("omit_empty") and not value:
            continue
        out[f.metadata.get("json", f.name)] = to_document(value)
    return out


def to_document(obj: Any) -> Any:
    """``obj`` as JSON-ready data: reports by :meth:`Report.document`, other dataclasses as dicts (by
    their JSON names), enums as their values."""
    if isinstance(obj, Report):
        return obj.document()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _fields(obj)
    if isinstance(obj, tuple | list):
        return [to_document(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_document(v) for k, v in obj.items()}
    if hasattr(obj, "value") and type(obj).__module__ != "builtins" and isinstance(obj.value, str | int):
        return obj.value  # an enum
    return obj


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_short(v)}" for k, v in value.items()) or "—"
    if isinstance(value, list | tuple):
        return ", ".join(_short(v) for v in value) or "—"
    return "—" if value is None else str(value)


def _facts(doc: Any) -> list[tuple[str, str]]:
    if not isinstance(doc, dict):
        return [("", _short(doc))]
    return [(str(k).replace("_", " "), _short(v)[:300]) for k, v in doc.items()]


def sections_of(report: Any, full: bool) -> list[Section]:
    if isinstance(report, Report):
        return report.sections(full)
    if isinstance(report, dict) and report and full:
        return [Facts("", _facts(report))]
    return []


def _text_table(t: Table) -> list[str]:
    cells = [t.headers, *t.rows]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(t.headers))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()

    return [line(t.headers), *(line(r) for r in t.rows)]


def _text(sections: list[Section], headline: str) -> str:
    out: list[str] = [headline] if headline else []
    for s in sections:
        pad = "  " if s.title else ""  # under a title, indented
        if s.title:
            out.append(f"{s.title}:")
        if isinstance(s, Table):
            out += [f"{pad}{line}" for line in _text_table(s)] if s.rows else [f"{pad}(none)"]
        elif isinstance(s, Facts):
            width = max((len(k) for k, _ in s.items), default=0)
            out += [f"{pad}{k.ljust(width)}  {v}" if k else f"{pad}{v}" for k, v in s.items]
        else:
            out += [f"{pad}{line}" for line in s.body.splitlines()]
    return "\n".join(out)


def _markdown(sections: list[Section], headline: str) -> str:
    out: list[str] = [f"# {headline}", ""] if headline else []
    for s in sections:
        if s.title:
            out += [f"## {s.title}", ""]
        if isinstance(s, Table):
            out.append("| " + " | ".join(s.headers) + " |")
            out.append("|" + "|".join("---" for _ in s.headers) + "|")
            out += ["| " + " | ".join(str(c) for c in r) + " |" for r in s.rows]
        elif isinstance(s, Facts):
            out += [f"- {k}: {v}" if k else f"- {v}" for k, v in s.items]
        elif s.code is not None:
            out += [f"```{s.code}", s.body, "```"]
        else:
            out.append(s.body)
        out.append("")
    return "\n".join(out)


def render(report: Any, fmt: Literal["text", "markdown", "json"], full: bool = False) -> str:
    """The one renderer: ``text`` (the screen, headless output; ``full`` for everything), ``markdown``
    (always full), ``json`` (the document)."""
    if fmt == "json":
        return json.dumps(to_document(report), indent=2, default=str)
    headline = report.headline() if isinstance(report, Report) else ""
    if fmt == "markdown":
        return _markdown(sections_of(report, True), headline)
    return _text(sections_of(report, full), headline if full else "")
