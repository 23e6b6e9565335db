"""Offered at once when the journal holds an action a killed console left unfinished.

Enter rolls it back (the :class:`actions.recover.Recover` action through the runner, as ``--action recover
--yes``) and shows its progress; Escape leaves it for later — every mutating action refuses until it is
done.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import RichLog, Static

from console.config import Config
from console.events import Event, Finished
from screens.base import OpsModal, work
from screens.event_text import line


class RecoverScreen(OpsModal):
    DEFAULT_CSS = """
    RecoverScreen { align: center middle; }
    #recover-box { width: 100; height: 24; border: thick $error; background: $surface; padding: 1 2; }
    #recover-log { height: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "recover", "roll back now"),
        Binding("escape", "later", "later"),
    ]

    def __init__(self, config: Config, unfinished: list[Any], read_only: bool) -> None:
        super().__init__()
        self.config = config
        self.unfinished = unfinished
        self.read_only = read_only
        self.running = False

    def compose(self) -> ComposeResult:
        lines = []
        for e in self.unfinished:
            applied = ", ".join(s["data"].get("key", "?") for s in e.applied()) or "no fault"
            lines.append(f"  {e.action} {e.id}: {applied} applied")
        names = "\n".join(lines)
        hint = (
            "This session is read-only: run `opsconsole --action recover --yes`."
            if self.read_only
            else "Enter: roll back now and wait for steady state · Escape: later (actions refuse until then)"
        )
        with Vertical(id="recover-box"):
            yield Static(
                f"An action did not finish (the console stopped mid-way):\n{names}\n\n{hint}",
                id="recover-text",
            )
            yield RichLog(id="recover-log", wrap=True, markup=False)

    def action_recover(self) -> None:
        if self.read_only or self.running:
            return
        self.running = True
        work(self, self._recover(), "recover", "recover")

    async def _recover(self) -> None:
        from actions.recover import Recover
        from console.action import NoParams
        from console.runner import Runner, yes

        log = self.query_one(RichLog)

        def emit(e: Event) -> None:
            if isinstance(e, Finished):
                log.write(f"{e.verdict}: {e.summary}")
            elif (text := line(e)) is not None:
                log.write(text)

        runner = Runner(Recover(self.config, NoParams()), emit, read_only=self.read_only)
        done = await runner.run(yes(True))
        self.running = False
        log.write("recovered — Escape closes" if done.exit_code == 0 else f"recovery ended: {done.verdict}")

    def action_later(self) -> None:
        if not self.running:
            self.dismiss(None)
