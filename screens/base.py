"""What every screen shares: a worker that fails anywhere reaches one handler, and the screen goes on.

Textual posts ``Worker.StateChanged`` to the node that started the worker and does not bubble it, so an
App-level handler never sees a screen's failing worker: it would be lost.  Every screen here derives from
:class:`OpsScreen` (or :class:`OpsModal`), whose handler passes the failure to :func:`worker_failed` — the
one place that turns it into a notification (one sentence) and writes its traceback to ``errors.log``.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from textual.app import App
from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen
from textual.worker import Worker, WorkerState

from console.errors import record_crash


def work(
    node: DOMNode, job: Coroutine[Any, Any, Any], group: str, description: str, exclusive: bool = True
) -> Worker[Any]:
    """Start a worker declared fully (as Harlequin's): its group (a new one replaces the running one when
    ``exclusive``), what it is in words (the error handler names it), and an error that is reported, not
    fatal to the app."""
    return node.run_worker(
        job, group=group, description=description, exclusive=exclusive, exit_on_error=False
    )


def worker_failed(app: App[Any], worker: Worker[Any]) -> str:
    """Show a failed worker's error (notification, and the app's log); the sentence shown."""
    error = worker.error if isinstance(worker.error, BaseException) else RuntimeError(str(worker.error))
    what = worker.description or worker.name or "a background task"
    sentence = f"{what} failed: {record_crash(what, error)}"
    app.log.error(sentence)
    app.notify(sentence, severity="error", timeout=10)
    return sentence


class _Reports:
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            worker_failed(self.app, event.worker)  # type: ignore[attr-defined]


class OpsScreen(_Reports, Screen[None]):
    """A full screen of the console."""


class OpsModal(_Reports, ModalScreen[None]):
    """A modal of the console."""
