"""Label selectors as Kubernetes and the Hetzner API parse them (``k=v``, ``k!=v``, ``k``, ``!k``, ``in``,
``notin``), shared by both twins so they filter the same way the real servers do."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import partial

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


def _absent(k: str, labels: Mapping[str, str]) -> bool:
    return k not in labels


def _present(k: str, labels: Mapping[str, str]) -> bool:
    return k in labels


def _in(k: str, vals: set[str], labels: Mapping[str, str]) -> bool:
    return labels.get(k) in vals


def _not_in(k: str, vals: set[str], labels: Mapping[str, str]) -> bool:
    return labels.get(k) not in vals


def _equal(k: str, v: str, labels: Mapping[str, str]) -> bool:
    return labels.get(k) == v


def _unequal(k: str, v: str, labels: Mapping[str, str]) -> bool:
    return labels.get(k) != v


def parse_selector(selector: str) -> Callable[[Mapping[str, str]], bool]:
    """Compile ``selector`` into a predicate over a label mapping; raise :class:`SelectorError` if invalid."""
    checks: list[Callable[[Mapping[str, str]], bool]] = []
    for term in _split(selector):
        m = _TERM.match(term)
        if not m:
            raise SelectorError(f"invalid label selector term {term.strip()!r}")
        if m.group("neg"):
            checks.append(partial(_absent, m.group("nkey")))
        elif m.group("skey"):
            vals = {v.strip() for v in m.group("vals").split(",") if v.strip()}
            checks.append(partial(_in if m.group("op") == "in" else _not_in, m.group("skey"), vals))
        elif m.group("key"):
            checks.append(
                partial(_unequal if m.group("cmp") == "!=" else _equal, m.group("key"), m.group("val"))
            )
        else:
            checks.append(partial(_present, m.group("exists")))
    return lambda labels: all(check(labels) for check in checks)
