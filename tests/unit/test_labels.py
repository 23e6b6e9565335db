"""Label selectors parse as Kubernetes and Hetzner parse them (shared by both twins)."""

from __future__ import annotations

import pytest

from lab.labels import SelectorError, parse_selector

LABELS = {"role": "worker", "cluster": "k3s", "tier": "db"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("role=worker", True),
        ("role==worker", True),
        ("role!=worker", False),
        ("role", True),
        ("!role", False),
        ("!missing", True),
        ("role in (worker, mgr)", True),
        ("role notin (worker)", False),
        ("role=worker,cluster=k3s", True),
        ("role=worker,tier=web", False),
        ("tier in (db),!gone", True),
    ],
)
def test_selector(selector: str, matches: bool) -> None:
    assert parse_selector(selector)(LABELS) is matches


def test_invalid_selector() -> None:
    with pytest.raises(SelectorError):
        parse_selector("role=(x")
