"""The action runner screen: one action's form, its preflight and plan, a typed confirmation, its live
steps and progress, and the result — built from the action class alone and run by the same
:class:`~console.runner.Runner` as ``--action``.

The form has a field per parameter the action shows in the TUI (``param(..., tui=True)``): a select for
choices, a checkbox for a switch, an input otherwise.  Once every required field is filled the runner
starts: preflight and plan appear in the log; an action that names a confirmation word (the target's
name) waits for it to be typed; one that does not starts at once when it has no fields, or on Enter in the
form when it has.  Changing a field before the confirmation starts over with the new value.
"""

from __future__ import annotations

import asyncio
import dataclasses
import typing
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Checkbox, Footer, Input, Label, RichLog, Select, Static

from console.action import Action, Plan, param_specs
from console.config import Config
from console.events import Diff, Event, Finished, Progress
from console.report import render
from console.runner import Runner
from screens.base import OpsScreen, work
from screens.event_text import line


class RunnerScreen(OpsScreen):
    DEFAULT_CSS = """
    #runner-title { height: auto; padding: 0 1; text-style: bold; }
    .runner-field { height: 3; padding: 0 1; }
    .runner-field Label { width: 20; padding: 1 1 0 0; }
    .runner-field Input, .runner-field Select { width: 1fr; }
    #runner-confirm { margin: 0 1; display: none; }
    #runner-confirm.-shown { display: block; }
    #runner-progress { height: 1; padding: 0 1; color: $text-muted; }
    #runner-result { height: auto; padding: 0 1; }
    #runner-log { height: 1fr; border: round $panel; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "back")]
    AUTO_FOCUS = ""  # the form or the confirmation, as _prepare decides — not the first field by rote

    def __init__(
        self,
        config: Config,
        action: type[Action[Any]],
        read_only: bool = False,
        initial: dict[str, Any] | None = None,
    ) -> None:
        """``initial``: parameter values the form starts with (a panel row's target)."""
        super().__init__()
        self.config = config
        self.initial = dict(initial or {})
        self.action_cls = action
        self.read_only = read_only
        self.fields = [(f, spec) for f, spec in param_specs(action.Params) if spec.tui]
        self.running = False  # confirmed and executing (the lock held)
        self.result: Finished | None = None  # set once the runner returned (lock released)
        self.word: str | None = None
        self._answer: asyncio.Future[bool] | None = None
        self._runner: Runner | None = None
        self._generation = 0
        self._retype: Any = None  # the pending restart while a form field is typed in
        self._prepared: Any = None  # the parameters the running runner was made with

    # ---- layout -------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        cls = self.action_cls
        yield Static(f"{cls.title}: {cls.description}", id="runner-title")
        if cls.guide:
            yield Static(cls.guide, id="runner-guide")
        for f, spec in self.fields:
            with Horizontal(classes="runner-field"):
                yield Label(spec.flag.removeprefix("--"))
                yield self._widget(f, spec)
        yield Input(id="runner-confirm")
        yield Static(id="runner-progress")
        yield Static(id="runner-result")
        yield RichLog(id="runner-log", wrap=True, markup=False)
        yield Footer()

    def _widget(self, f: dataclasses.Field[Any], spec: Any) -> Any:
        value = self.initial.get(f.name, spec.form_default(self.config, f.default))
        wid = f"param-{f.name}"
        kind = typing.get_type_hints(self.action_cls.Params)[f.name]
        if kind is bool:
            return Checkbox(spec.help, bool(value), id=wid)
        options = spec.options(self.config)
        if options:
            return Select(
                [(o, o) for o in options],
                value=value if value in options else Select.NULL,
                allow_blank=value not in options,
                prompt=spec.help,
                id=wid,
            )
        return Input(value="" if value is None else str(value), placeholder=spec.help, id=wid)

    def on_mount(self) -> None:
        self._prepare()

    # ---- the form -----------------------------------------------------------------------------------

    def _params(self) -> Any | None:
        """The parameters the form says, or None while a required one is missing."""
        hints = typing.get_type_hints(self.action_cls.Params)
        values: dict[str, Any] = {}
        for f, spec in self.fields:
            widget = self.query_one(f"#param-{f.name}")
            if isinstance(widget, Checkbox):
                value: Any = widget.value
            elif isinstance(widget, Select):
                value = None if widget.value is Select.NULL else widget.value
            else:
                assert isinstance(widget, Input)
                value = _convert(hints[f.name], widget.value.strip())
            if value is None and spec.required:
                return None
            if value is not None:
                values[f.name] = value
        return self.action_cls.Params(**values)

    def _changed(self) -> None:
        self._retype = None
        if not self.running and self._params() != self._prepared:  # a select settling is no change
            self._prepare()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()  # the dashboard's filter listens for its own box only, but say so here too
        if event.input.id == "runner-confirm":
            return
        # Typing a value: start over once the operator pauses, not on every key.
        if self._retype is not None:
            self._retype.stop()
        self._retype = self.set_timer(0.6, self._changed)

    def on_select_changed(self, event: Select.Changed) -> None:
        self._changed()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        self._changed()

    # ---- the run ------------------------------------------------------------------------------------

    def _prepare(self) -> None:
        """(Re)start the runner with the form's parameters: preflight and plan, then the confirmation.

        The confirmation box is shown at once when there is a word to type (the target's name is known
        from the form): what is typed before the plan is in waits for the runner to ask."""
        self._generation += 1
        self.result = None
        box = self.query_one("#runner-confirm", Input)
        box.remove_class("-shown")
        self.query_one(RichLog).clear()
        params = self._params()
        if params is None:
            self.word = None
            self.query_one("#runner-progress", Static).update("fill in the form to see the plan")
            self.workers.cancel_group(self, "runner")
            if self.focused is None and self.fields:
                self.query_one(f"#param-{self.fields[0][0].name}").focus()
            return
        action = self.action_cls(self.config, params)
        first = self._prepared is None
        self._prepared = params
        self.word = action.confirm_word()
        self._answer = asyncio.get_running_loop().create_future()
        if self.word is not None or self.fields:
            box.placeholder = (
                f"type {self.word} to run it (Escape: back)"
                if self.word
                else "press Enter here to run it (Escape: back)"
            )
            box.value = ""
            box.add_class("-shown")
            if first or not (self.focused and (self.focused.id or "").startswith("param-")):
                box.focus()  # at first; later, not away from a field the operator is filling in
        self._runner = Runner(action, self._emitter(self._generation), read_only=self.read_only)
        work(self, self._go(self._runner, self._answer), "runner", action.name)

    def _emitter(self, generation: int) -> Any:
        def emit(e: Event) -> None:
            if generation == self._generation:  # a runner the form replaced says nothing more
                self._event(e)

        return emit

    async def _go(self, runner: Runner, answer: asyncio.Future[bool]) -> None:
        async def confirm(action: Action[Any], plan: Plan) -> bool:
            if self.word is None and not self.fields:
                self.running = True
                return True  # nothing to confirm: it starts at once
            return await answer

        finished = await runner.run(confirm)
        if runner is self._runner:  # a runner the form replaced says nothing of the current one
            self.running = False
            # Only now — the runner has released the lock and closed the journal entry — is it done.
            self.result = finished

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        answer = self._answer
        if answer is None or answer.done() or event.input.id != "runner-confirm":
            return
        if self.word is not None and event.value.strip() != self.word:
            self.notify(f"type {self.word} exactly: nothing ran", severity="warning")
            event.input.value = ""
            return
        event.input.disabled = True
        for f, _ in self.fields:
            self.query_one(f"#param-{f.name}").disabled = True
        self.running = True
        answer.set_result(True)

    def _event(self, e: Event) -> None:
        log = self.query_one(RichLog)
        if isinstance(e, Progress):
            self.query_one("#runner-progress", Static).update(e.message)
        elif isinstance(e, Diff):
            for row in e.message.splitlines():
                style = "green" if row.startswith("+") else "red" if row.startswith("-") else ""
                log.write(Text(row, style=style))
        elif isinstance(e, Finished):
            self.query_one("#runner-confirm", Input).remove_class("-shown")  # nothing more to confirm
            brief = render(e.report, "text")
            extra = (f"\n{brief}" if brief else "") + (f"\n{e.report_path}" if e.report_path else "")
            self.query_one("#runner-result", Static).update(f"{e.verdict}: {e.summary}{extra}\nEscape: back")
        elif (text := line(e)) is not None:
            log.write(text)

    def action_back(self) -> None:
        if self.running:
            self.notify("the action is running: it finishes (or rolls back) on its own", timeout=4)
            return
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(False)  # not confirmed: the runner ends with nothing changed
        self.dismiss(None)


def _convert(kind: Any, text: str) -> Any:
    """A form field's text as the parameter's type (None when empty)."""
    if not text:
        return None
    if kind in (int, int | None):
        return int(text) if text.lstrip("-").isdigit() else None
    if kind in (Path, Path | None):
        return Path(text)
    return text
