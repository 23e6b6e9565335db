"""The action runner screen: one action's plan, a typed confirmation when it changes data, its live
steps and Borg's progress, and the result — rendering the same events ``--action … --json`` prints.

Destructive actions (restore, restore-cluster, prune) start only after the operator typed the name of
what they replace (the target database, ``k3s-cluster``, ``prune``); the others start at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Input, RichLog, Static

from actions.registry import ACTIONS
from console.config import Config
from console.events import Check, Event, Finished, Log, StepFinished
from screens.event_text import line

Runner = Callable[[Config, Callable[[Event], None]], Awaitable[int]]


def previews(config: Config) -> dict[str, Runner]:
    """Shown before the confirmation: what the action would change (the HA diff, the prune list)."""
    from actions import backup, disaster, ha, promote, provision

    return {
        "recover": disaster.preview,
        "ha": ha.run_dry_run,
        "provision": provision.run_plan,
        "promote": lambda c, e: promote.run_promote(c, e, False, True),
        "rollback": lambda c, e: promote.run_rollback(c, e, False, True),
        "prune": lambda c, e: backup.run_prune(c, e, True),
    }


def runners(config: Config) -> dict[str, tuple[str | None, Runner]]:
    """Action name -> (the word to type before it runs, or None; how to run it)."""
    from actions import backup, disaster, ha, promote, provision, restore

    staging = config.database.databases[-1]
    return {
        "recover": (config.cluster.name, lambda c, e: disaster.run_disaster_recovery(c, e, True)),
        "provision": (config.cluster.name, lambda c, e: provision.run_provision(c, e)),
        "promote": ("promote", lambda c, e: promote.run_promote(c, e, True, False)),
        "rollback": ("rollback", lambda c, e: promote.run_rollback(c, e, True, False)),
        "ha": ("ha", ha.run_apply),
        "backup": (None, lambda c, e: backup.run_backup(c, e, "all")),
        "backup-check": (None, lambda c, e: backup.run_check(c, e, False)),
        "archives": (None, backup.run_archives),
        "verify-restore": (None, restore.run_verify_restore),
        "prune": ("prune", lambda c, e: backup.run_prune(c, e, False)),
        "restore": (
            staging,
            lambda c, e: restore.run_restore_db(c, e, staging, "latest", staging, True, False),
        ),
        "restore-cluster": ("k3s-cluster", lambda c, e: restore.run_restore_cluster(c, e, "latest", True)),
    }


def choosers(config: Config) -> dict[str, tuple[tuple[str, ...], Callable[[str], Runner]]]:
    """Actions whose typed word is also a choice (which worker to replace): the words, and the run."""
    from actions.replace_node import run_replace_node

    def replace(node: str) -> Runner:
        return lambda c, e: run_replace_node(c, e, node, True)

    workers = tuple(n.name for n in config.nodes if n.role == "agent")
    return {"replace-node": (workers, replace)}


GUIDES = {
    "replace-node": (
        "Type the worker to replace. Then: preflight (full steady state), probes of prod and staging,\n"
        "cordon, out of the load balancer, drain, delete the Node and the server, create a new server,\n"
        "join it, back into the load balancer, wait for steady state. Before the old server is deleted a\n"
        "failure rolls back; after it, Provision converges."
    ),
    "provision": "Creates what the plan below says is missing (nothing is deleted). Type the cluster's name.",
    "recover": "Disaster recovery: the cluster's server is gone. Type the cluster's name to rebuild it from "
    "the latest backups.",
    "restore-cluster": (
        "The seed's recovery procedure — this action is steps 2 (etcd snapshot) on the existing server:\n"
        "  1. provision 3 fresh CAX11 nodes (#9)   2. install K3s, restore the etcd snapshot\n"
        "  3. or: fresh K3s + re-apply the manifests from Borg   4. restore the database from pg_dump\n"
        "  5. update DNS to the new LB IP   — estimated 15–30 minutes in all.\n"
        "Here: stop k3s on the server, upload the snapshot, k3s server --cluster-reset, start k3s; each "
        "step is timed below."
    ),
    "restore": "Restores staging from the latest dump; production only headless with --i-mean-production "
    "after a safety archive.",
}


class RunnerScreen(Screen[None]):
    DEFAULT_CSS = """
    #runner-title { height: auto; padding: 0 1; text-style: bold; }
    #runner-confirm { margin: 0 1; }
    #runner-progress { height: 1; padding: 0 1; color: $text-muted; }
    #runner-result { height: auto; padding: 0 1; }
    #runner-log { height: 1fr; border: round $panel; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "back")]

    def __init__(self, config: Config, name: str) -> None:
        super().__init__()
        self.config = config
        self.action_name = name
        chooser = choosers(config).get(name)
        self.choices: tuple[str, ...] = chooser[0] if chooser else ()
        self.choose = chooser[1] if chooser else None
        if chooser is not None:
            self.word: str | None = " or ".join(self.choices)
            self.run_fn: Runner | None = None
        else:
            self.word, self.run_fn = runners(config)[name]
        self.running = False
        self.result: Finished | None = None  # set once the action returned (lock released)
        self._finished: Finished | None = None

    def compose(self) -> ComposeResult:
        info = ACTIONS[self.action_name]
        yield Static(f"{info.title}: {info.description}", id="runner-title")
        if self.action_name in GUIDES:
            yield Static(GUIDES[self.action_name], id="runner-guide")
        if self.word:
            yield Input(placeholder=f"type {self.word} to run it (Escape: back)", id="runner-confirm")
        yield Static(id="runner-progress")
        yield Static(id="runner-result")
        yield RichLog(id="runner-log", wrap=True, markup=False)
        yield Footer()

    def on_mount(self) -> None:
        if self.word:
            self.query_one(Input).focus()
            preview = previews(self.config).get(self.action_name)
            if preview is not None:
                self.run_worker(self._preview(preview), group="preview", exit_on_error=False)
        else:
            self._start()

    async def _preview(self, preview: Runner) -> None:
        log = self.query_one(RichLog)
        log.write("what would change:")

        def show(e: Event) -> None:
            if isinstance(e, Log) and e.level == "diff":
                for line in e.message.splitlines():
                    style = "green" if line.startswith("+") else "red" if line.startswith("-") else ""
                    log.write(Text(line, style=style))
            elif isinstance(e, Log):
                log.write(f"{e.level}: {e.message}")
            elif isinstance(e, Check):
                log.write(Text(f"{'✔' if e.ok else '✘'} {e.name}: {e.why}", style="green" if e.ok else "red"))
            elif isinstance(e, StepFinished):
                log.write(e.detail)
            elif isinstance(e, Finished):
                log.write(f"{e.verdict}: {e.summary}")

        await preview(self.config, show)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        typed = event.value.strip()
        if self.choose is not None and typed in self.choices:
            self.run_fn = self.choose(typed)
        elif typed != self.word or self.choose is not None:
            self.notify(f"type {self.word} exactly: nothing ran", severity="warning")
            return
        event.input.disabled = True
        self._start()

    def _start(self) -> None:
        self.running = True
        self.run_worker(self._run(), exclusive=True, group="runner", exit_on_error=False)

    async def _run(self) -> None:
        from console.clients.borg import BorgError
        from console.clients.pgtools import PgToolError
        from console.runner import Refused

        assert self.run_fn is not None
        try:
            await self.run_fn(self.config, self._event)
        except (Refused, BorgError, PgToolError, RuntimeError) as exc:
            self._event(Finished("FAIL", 1, f"{type(exc).__name__}: {exc}"))
        finally:
            self.running = False
        # Only now — the action's session has released the lock and closed the journal entry — is it done.
        self.result = self._finished

    def _event(self, e: Event) -> None:
        log = self.query_one(RichLog)
        if isinstance(e, Log) and e.level == "progress":
            self.query_one("#runner-progress", Static).update(e.message)
        elif isinstance(e, Finished):
            self._finished = e
            extra = f"\n{e.report_path}" if e.report_path else ""
            self.query_one("#runner-result", Static).update(f"{e.verdict}: {e.summary}{extra}\nEscape: back")
        elif (text := line(e)) is not None:
            log.write(text)

    def action_back(self) -> None:
        if self.running:
            self.notify("the action is running: it finishes (or rolls back) on its own", timeout=4)
            return
        self.dismiss(None)
