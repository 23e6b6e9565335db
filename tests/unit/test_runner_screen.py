"""The runner screen built from an action class alone (screens/runner.py): its form, the typed
confirmation, and what runs — with an action of the test's own that touches nothing but the journal."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from textual.app import App
from textual.widgets import Input, Select

from console.action import Action, Outcome, Plan, param
from console.config import Config, load_config
from console.errors import Verdict
from console.events import PlanItem
from console.runner import Run
from screens.runner import RunnerScreen
from tests.conftest import ROOT

RAN: list[dict[str, Any]] = []


def _targets(config: Config) -> list[str]:
    return [n.name for n in config.nodes if n.role == "agent"]


@dataclass(frozen=True)
class TargetParams:
    target: str | None = param("--target", "which worker", choices=_targets, required=True)
    note: str = param("--note", "a word for the journal", "")


class Flip(Action[TargetParams]):
    name = "flip"
    title = "Flip a worker"
    description = "a test's action"
    Params = TargetParams
    takes_lock = False

    def confirm_word(self) -> str | None:
        return self.params.target

    async def plan(self, run: Run) -> Plan:
        return Plan([PlanItem("change", f"flip {self.params.target}")])

    async def execute(self, run: Run) -> Outcome:
        RAN.append({"target": self.params.target, "note": self.params.note})
        return Outcome(Verdict.DONE, f"{self.params.target} flipped")


class Host(App[None]):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config

    def on_mount(self) -> None:
        self.push_screen(RunnerScreen(self.config, Flip))


async def _until(pilot: Any, predicate: Any, what: str) -> None:
    for _ in range(200):
        if predicate():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    RAN.clear()


async def _screen(pilot: Any) -> RunnerScreen:
    """The runner screen once its form is there."""
    app = pilot.app
    await _until(pilot, lambda: isinstance(app.screen, RunnerScreen), "the runner screen")
    screen = app.screen
    assert isinstance(screen, RunnerScreen)
    await _until(pilot, lambda: bool(screen.query("#param-target")), "the form")
    return screen


async def test_the_form_the_confirmation_and_the_run() -> None:
    app = Host(load_config(ROOT / "config.toml"))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _screen(pilot)
        assert screen.word is None  # a required field is empty: no plan, nothing to confirm yet
        assert app.focused is screen.query_one("#param-target")

        screen.query_one("#param-target", Select).value = "k3s-w2"
        await _until(pilot, lambda: screen.word == "k3s-w2", "the confirmation word")
        confirm = screen.query_one("#runner-confirm", Input)
        note = screen.query_one("#param-note", Input)
        note.focus()
        await pilot.press(*"hello")
        assert app.focused is note and note.value == "hello"  # typing in a field keeps the focus there
        await _until(pilot, lambda: getattr(screen._prepared, "note", None) == "hello", "the plan again")

        confirm.focus()
        await pilot.press(*"k3s-w1", "enter")  # not the chosen worker
        await pilot.pause(0.1)
        assert RAN == [] and screen.result is None and not screen.running and confirm.value == ""
        await pilot.press(*"k3s-w2", "enter")
        await _until(pilot, lambda: screen.result is not None, "the result")
        assert screen.result is not None and screen.result.verdict is Verdict.DONE
        assert RAN == [{"target": "k3s-w2", "note": "hello"}]


async def test_escape_before_the_confirmation_runs_nothing() -> None:
    app = Host(load_config(ROOT / "config.toml"))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _screen(pilot)
        screen.query_one("#param-target", Select).value = "k3s-w1"
        await _until(pilot, lambda: screen.word == "k3s-w1", "the confirmation word")
        await pilot.press("escape")
        await _until(pilot, lambda: not isinstance(app.screen, RunnerScreen), "the screen closed")
        assert RAN == []
