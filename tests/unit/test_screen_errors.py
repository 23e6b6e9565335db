"""A worker that fails inside a screen reaches the one handler (screens/base.py): a notification with the
error in one sentence, the traceback in errors.log — and the screen stays usable."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static

from screens.base import OpsScreen


class Failing(OpsScreen):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("k", "count", "count")]

    def __init__(self) -> None:
        super().__init__()
        self.presses = 0

    def compose(self) -> ComposeResult:
        yield Static("a screen")

    def on_mount(self) -> None:
        self.run_worker(self._boom(), exit_on_error=False, description="the preview")

    async def _boom(self) -> None:
        raise ValueError("the API said no")

    def action_count(self) -> None:
        self.presses += 1


class Host(App[None]):
    def on_mount(self) -> None:
        self.push_screen(Failing())


async def test_a_failing_worker_in_a_screen_is_shown_and_the_screen_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    app = Host()
    async with app.run_test() as pilot:
        for _ in range(100):
            if app._notifications:
                break
            await pilot.pause(0.02)
        notes: list[Any] = list(app._notifications)
        assert len(notes) == 1 and notes[0].severity == "error"
        assert "the preview failed" in notes[0].message and "ValueError: the API said no" in notes[0].message
        screen = app.screen
        assert isinstance(screen, Failing)
        await pilot.press("k")
        assert screen.presses == 1  # still answering keys
    log = (tmp_path / "opsconsole" / "errors.log").read_text()
    assert "Traceback" in log and "the API said no" in log
