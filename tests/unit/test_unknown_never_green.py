"""What a source could not see is unknown everywhere, never good: each source knocked out in turn from the
seed's healthy state, and every status line and every panel that depends on it checked.

(Before #19 ``--action status`` printed "ha: 4/4 patches hold" with the Kubernetes API unreachable: an
unknown counted as holding.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from actions.status import status_lines
from console.config import load_config
from console.model import SourceState
from console.snapshot import build
from console.store import ClusterStore
from screens.app import Dashboard
from screens.panels import PANELS, Panel
from tests.conftest import ROOT
from tests.unit.seed_state import SOURCES, fill, knock_out

CONFIG = load_config(ROOT / "config.toml")

# The status lines each source's data makes, and the words they say when it is good.
GOOD = {
    "kubernetes": [("nodes:", "Ready"), ("database:", "healthy state"), ("ha:", "1/4 patches hold")],
    "hetzner": [("lb:", "healthy")],
    "postgres": [("replica:", "streaming"), ("postgres:", "system id"), ("slot:", "retains")],
    "borg": [("backup:", "newest")],
    "http": [("probe:", "-> 200")],
    "dns": [("dns:", "46.225.37.135")],
}


def _store(down: str | None = None) -> ClusterStore:
    """The seed's state with its overdue backup made fresh: no critical finding, every source good."""
    store = ClusterStore()
    fill(store)
    fresh = tuple(dataclasses.replace(b, overdue=False, age_hours=2.0) for b in store.extra["backups"])
    store.set_extra("backups", fresh)
    if down is not None:
        knock_out(store, down)
    return store


def _lines(store: ClusterStore) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in status_lines(build(store, CONFIG, "admin")):
        out.setdefault(line.split()[0], []).append(line)
    return out


def test_the_seed_state_reads_good_on_every_line() -> None:
    lines = _lines(_store())
    for source, wanted in GOOD.items():
        for prefix, good in wanted:
            assert any(good in line for line in lines[prefix]), (source, lines[prefix])
    assert lines["verdict:"] == ["verdict:   healthy"]


@pytest.mark.parametrize("source", SOURCES)
def test_a_source_down_makes_its_lines_unknown_and_the_verdict_not_healthy(source: str) -> None:
    lines = _lines(_store(source))
    for prefix, good in GOOD[source]:
        said = lines.get(prefix, [])
        assert said and not any(good in line for line in said), (source, said)
        assert any("unknown" in line or "unreachable" in line for line in said), (source, said)
    (verdict,) = lines["verdict:"]
    assert "healthy" not in verdict.replace("no critical finding", "")
    assert source in verdict or "CRITICAL" in verdict
    snap = build(_store(source), CONFIG, "admin")
    assert any(f.code == "source-unavailable" and f.subject == source for f in snap.findings)


def _depends(panel: str, source: str) -> bool:
    names = PANELS[panel][3]
    return source in names or (source == "kubernetes" and any(n.startswith("kube:") for n in names))


@pytest.mark.parametrize("source", SOURCES)
async def test_a_source_down_turns_every_panel_that_reads_it_unreachable(source: str) -> None:
    app = Dashboard(CONFIG, start_sources=False)
    async with app.run_test(size=(150, 100)) as pilot:
        fill(app.store)
        knock_out(app.store, source)
        for _ in range(100):
            await pilot.pause(0.02)
            if app.snapshot is not None and not app._building and app._build_timer is None:
                break
        app._show(None)
        await pilot.pause()
        states = {p.panel_id: p.state for p in app.query(Panel)}
        for panel, state in states.items():
            if _depends(panel, source):
                assert state is SourceState.UNREACHABLE, (source, panel, state)
            elif panel == "findings":
                rows = [str(c) for key in p_rows(app, panel) for c in key]
                assert "source-unavailable" in rows, rows


def p_rows(app: Dashboard, panel: str) -> list[list[object]]:
    table = app.query_one(f"#panel-{panel}", Panel).table
    return [list(table.get_row(key)) for key in table.rows]


def test_a_missing_kubeconfig_is_one_sentence_naming_the_file(tmp_path: Path) -> None:
    import asyncio

    from console.sources.kube import KubeconfigError, api_client

    missing = tmp_path / "nowhere" / "kubeconfig"
    with pytest.raises(KubeconfigError) as err:
        asyncio.run(api_client(str(missing), "admin"))
    text = err.value.sentence()
    assert str(missing) in text and "[kubernetes] kubeconfig" in text and "\n" not in text
    assert err.value.exit_code == 2
