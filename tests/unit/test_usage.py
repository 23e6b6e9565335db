"""Usage as the Nodes and Pods panels show it: Kubernetes quantities read, and written as ``kubectl top``
writes them (the metrics source end to end: tests/test_kube_metrics.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from console.snapshot import _requests_and_limits
from console.units import quantity, share, usage_cell


@pytest.mark.parametrize(
    ("text", "value"),
    [("250m", "0.25"), ("2", "2"), ("123456789n", "0.123456789"), ("100u", "0.0001"), ("128Mi", "134217728"),
     ("4000Ki", "4096000"), ("1G", "1000000000"), ("1e3", "1000"), ("1.5", "1.5")],
)  # fmt: skip
def test_quantities_read_as_kubernetes_reads_them(text: str, value: str) -> None:
    assert quantity(text) == Decimal(value)


@pytest.mark.parametrize("text", ["", "1x", "ki", "1mi", "1.2.3"])
def test_what_is_not_a_quantity(text: str) -> None:
    with pytest.raises(ValueError):
        quantity(text)


def test_cells_as_kubectl_top_writes_them() -> None:
    assert usage_cell(27, None, "cpu") == "27m" and usage_cell(None, 100, "cpu") == "-"
    assert usage_cell(5 * 2**20 + 3, 170 * 2**20, "memory") == "5Mi/170Mi"
    assert share(27, 2000) == "1%" and share(None, 2000) == "" and share(27, None) == ""


def test_requests_and_limits_of_a_pod() -> None:
    both = [
        {"resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "170Mi"}}},
        {"resources": {"requests": {"cpu": "0.5"}, "limits": {"memory": "1Gi"}}},
    ]
    assert _requests_and_limits(both) == (600, 170 * 2**20 + 2**30)
    unlimited = [{"resources": {"limits": {"memory": "64Mi"}}}, {"resources": {}}]
    assert _requests_and_limits(unlimited) == (None, None)  # one container may take what the node has
