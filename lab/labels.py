"""Label selectors as Kubernetes and the Hetzner API parse them (``k=v``, ``k!=v``, ``k``, ``!k``, ``in``,
``notin``), shared by both twins so they filter the same way the real servers do."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

_TERM = re.compile(
    r"""^\s*(?:
        (?P<neg>!)\s*(?P<nkey>[\w./-]+) |
        (?P<skey>[\w./-]+)\s+(?P<op>in|notin)\s*\((?P<vals>[^)]*)\) |
        (?P<key>[\w./-]+)\s*(?P<cmp>==|=|!=)\s*(?P<val>[\w.-]*) |
        (?P<exists>[\w./-]+)
    )\s*$""",
    re.X,
)


class SelectorError(ValueError):
    """The selector does not parse; the twins answer this with their own 400 body."""


def _split(selector: str) -> list[str]:
    terms, depth, cur = [], 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        terms.append(cur)
    return terms


def parse_selector(selector: str) -> Callable[[Mapping[str, str]], bool]:
    """Compile ``selector`` into a predicate over a label mapping; raise :class:`SelectorError` if invalid."""
    checks: list[Callable[[Mapping[str, str]], bool]] = []
    for term in _split(selector):
        m = _TERM.match(term)
        if not m:
            raise SelectorError(f"invalid label selector term {term.strip()!r}")
        if m.group("neg"):
            k = m.group("nkey")
            checks.append(lambda labels, k=k: k not in labels)
        elif m.group("skey"):
            k, vals = m.group("skey"), {v.strip() for v in m.group("vals").split(",") if v.strip()}
            if m.group("op") == "in":
                checks.append(lambda labels, k=k, vals=vals: labels.get(k) in vals)
            else:
                checks.append(lambda labels, k=k, vals=vals: labels.get(k) not in vals)
        elif m.group("key"):
            k, v = m.group("key"), m.group("val")
            if m.group("cmp") == "!=":
                checks.append(lambda labels, k=k, v=v: labels.get(k) != v)
            else:
                checks.append(lambda labels, k=k, v=v: labels.get(k) == v)
        else:
            k = m.group("exists")
            checks.append(lambda labels, k=k: k in labels)
    return lambda labels: all(check(labels) for check in checks)
