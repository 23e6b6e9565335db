"""The detail screen's YAML (managedFields folded, a Secret's values masked), a row's object, and how a
log line and a log query read — the pure parts of console/detail.py and console/logs.py (the screens and
``--action logs`` over the lab: tests/test_cockpit.py)."""

from __future__ import annotations

import pytest

from console.detail import MASK, ObjectRef, event_selector, ref_for, yaml_text
from console.errors import UsageError
from console.logs import LogQuery, pretty, since_seconds

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def test_yaml_folds_managed_fields_and_masks_a_secrets_values() -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "docfast-db-credentials",
            "managedFields": [{"manager": "kubectl"}, {"manager": "cnpg"}],
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": '{"data":{"password":"c2VjcmV0"}}'
            },
        },
        "data": {"username": "ZG9jZmFzdA==", "password": "c2VjcmV0"},
    }
    text = yaml_text(secret)
    assert "c2VjcmV0" not in text and "ZG9jZmFzdA==" not in text and text.count(MASK) == 3
    assert "# managedFields: 2 entries, folded" in text and "manager:" not in text
    assert secret["data"]["password"] == "c2VjcmV0"  # the object itself is untouched


def test_a_rows_object_and_its_events_selector() -> None:
    assert ref_for("nodes", "k3s-w2", None, "postgres") == ObjectRef("Node", "k3s-w2")
    assert ref_for("pods", "docfast/docfast-1", None, "postgres") == ObjectRef("Pod", "docfast-1", "docfast")
    assert ref_for("database", "main-db-2", None, "postgres") == ObjectRef("Pod", "main-db-2", "postgres")
    assert ref_for("endpoints", "probe:prod", None, "postgres") is None  # a probe: no object behind it
    assert ObjectRef("Pod", "p", "ns").path == "/api/v1/namespaces/ns/pods/p"
    assert ObjectRef("Node", "k3s-w1").path == "/api/v1/nodes/k3s-w1"
    assert (
        event_selector(ObjectRef("Node", "k3s-w1")) == "involvedObject.kind=Node,involvedObject.name=k3s-w1"
    )


def test_json_log_lines_read_as_text_and_others_stay() -> None:
    line = '{"level":"info","ts":"2026-12-02T00:00:00Z","logger":"postgres","msg":"ready","pid":42}'
    assert pretty(line) == "INFO postgres: ready pid=42"
    assert pretty("2026-12-02T00:00:01.5Z " + line) == "2026-12-02T00:00:01.5Z INFO postgres: ready pid=42"
    assert pretty("GET /health 200 1.0ms") == "GET /health 200 1.0ms"
    assert pretty("{not json") == "{not json"


def test_since_and_the_query() -> None:
    assert since_seconds("5m") == 300 and since_seconds("1h") == 3600 and since_seconds("30s") == 30
    for bad in ("5 minutes", "0m", "m", "-1h"):
        with pytest.raises(UsageError):
            since_seconds(bad)
    q = LogQuery("docfast", "p", container="docfast", follow=True, tail=10, since_s=60, timestamps=True)
    assert q.params() == {
        "container": "docfast",
        "follow": "true",
        "tailLines": "10",
        "sinceSeconds": "60",
        "timestamps": "true",
    }
    assert "follow" not in LogQuery("ns", "p", follow=True, previous=True).params()  # a past run ends
