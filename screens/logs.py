"""A pod's log, followed live: container, tail, since, previous run, timestamps, wrap, ``/`` search with
highlighting, pause and resume; JSON lines pretty-printed.  The query and the reading are console/logs.py's.

Lines are not written one widget update each: the stream appends to ``pending`` and the first line of a
batch schedules one flush a frame later, written as one block, so a log at a thousand lines a second
costs about twenty updates a second and keys stay quick.  The view follows the end while it is there;
scrolled up, it stays where the operator reads.  The screen keeps the newest ``KEEP`` lines (search, rewrap).
"""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.timer import Timer
from textual.widgets import Footer, Input, RichLog, Static

from console.clients.kube import KubeError
from console.logs import SINCE_CHOICES, LogQuery, pod_containers, pod_log, pretty, since_seconds
from screens.base import OpsScreen, work

KEEP = 5000
TAILS = (200, 1000, None)  # lines asked for when the stream starts: None is all the kubelet has
FLUSH_S = 0.05


class LogScreen(OpsScreen):
    DEFAULT_CSS = """
    LogScreen #logs-title { height: 1; background: $primary; color: $text; padding: 0 1; }
    LogScreen #logs-state { height: 1; color: $text-muted; padding: 0 1; }
    LogScreen RichLog { height: 1fr; }
    LogScreen Input { display: none; height: 3; }
    LogScreen Input.-shown { display: block; }
    """

    AUTO_FOCUS = "#logs-view"  # not the hidden search box: keys are the screen's until `/`
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "back"),
        Binding("space", "pause", "pause/resume"),
        Binding("slash", "search", "search"),
        Binding("c", "container", "container"),
        Binding("s", "since", "since"),
        Binding("t", "timestamps", "timestamps"),
        Binding("w", "wrap", "wrap"),
        Binding("P", "previous", "previous"),
        Binding("T", "tail", "tail"),
    ]

    def __init__(self, api: Any, namespace: str, pod: str, containers: list[str] | None = None) -> None:
        super().__init__()
        self.api = api
        self.namespace = namespace
        self.pod = pod
        self.containers = containers or []
        self.container = self.containers[0] if self.containers else None
        self.since: str | None = None
        self.tail: int | None = TAILS[0]
        self.previous = False
        self.timestamps = False
        self.wrap = False
        self.paused = False
        self.search = ""
        self.lines: deque[str] = deque(maxlen=KEEP)
        self.pending: list[str] = []
        self.shown = 0  # lines written to the widget since the last rewrite (the tests wait on it)
        self.state = "starting"
        self._flush: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Static(f"logs · {self.namespace}/{self.pod}", id="logs-title")
        yield Static("", id="logs-state")
        yield Input(placeholder="search (Enter keeps it, Escape clears)", id="logs-search")
        yield RichLog(id="logs-view", max_lines=KEEP, wrap=self.wrap, markup=False, highlight=False)
        yield Footer()

    def on_mount(self) -> None:
        self._restart()

    @property
    def view(self) -> RichLog:
        return self.query_one("#logs-view", RichLog)

    def query_now(self) -> LogQuery:
        return LogQuery(
            self.namespace,
            self.pod,
            container=self.container,
            follow=not self.previous,
            tail=self.tail,
            since_s=since_seconds(self.since) if self.since else None,
            previous=self.previous,
            timestamps=self.timestamps,
        )

    def _restart(self) -> None:
        """The query changed: read again from the start."""
        self.lines.clear()
        self.pending.clear()
        self.view.clear()
        self.shown = 0
        self._set_state("reading")
        work(self, self._stream(self.query_now()), "log", f"the log of {self.namespace}/{self.pod}")

    async def _stream(self, query: LogQuery) -> None:
        try:
            if not self.containers:  # opened from a row: the pod says which containers it has
                self.containers = await pod_containers(self.api, self.namespace, self.pod)
                if self.container is None and self.containers:
                    self.container = self.containers[0]
                    query = self.query_now()
            self._set_state("following" if query.follow else "read")
            async for line in pod_log(self.api, query):
                self.lines.append(pretty(line))
                if not self.paused:
                    self.pending.append(self.lines[-1])
                    if self._flush is None:
                        self._flush = self.set_timer(FLUSH_S, self._write_pending)
            self._set_state("the container's run ended" if query.follow else "read")
        except KubeError as exc:
            self._set_state(exc.message)

    def _write_pending(self) -> None:
        """One write for the batch (a render per line cost most of a busy log's time), following the end
        only while the view is at it: scrolled up to read, new lines do not pull the view away."""
        self._flush = None
        needle = self.search.lower()
        lines = [ln for ln in self.pending if needle in ln.lower()] if needle else self.pending
        self.pending = []
        if not lines:
            return  # nothing new, or nothing the search lets through
        view = self.view
        at_end = view.is_vertical_scroll_end or view.max_scroll_y == 0
        view.write(Text("\n").join(self._text(line) for line in lines), scroll_end=at_end)
        self.shown += len(lines)

    def _text(self, line: str) -> Text:
        text = Text(line)
        if self.search:
            text.highlight_words([self.search], style="reverse yellow", case_sensitive=False)
        return text

    def _rewrite(self) -> None:
        """Search, wrap or resume changed how every kept line shows."""
        view = self.view
        view.clear()
        view.wrap = self.wrap
        lines = (
            [ln for ln in self.lines if self.search.lower() in ln.lower()]
            if self.search
            else list(self.lines)
        )
        for line in lines:
            view.write(self._text(line))
        self.shown = len(lines)
        self.pending.clear()

    def _set_state(self, what: str) -> None:
        self.state = what
        flags = [
            f"container {self.container or '-'}",
            f"tail {self.tail if self.tail is not None else 'all'}",
            f"since {self.since or 'start'}",
            "previous run" if self.previous else "",
            "timestamps" if self.timestamps else "",
            "wrap" if self.wrap else "",
            "PAUSED" if self.paused else "",
            f"search {self.search!r}" if self.search else "",
        ]
        self.query_one("#logs-state", Static).update(" · ".join([what, *(f for f in flags if f)]))

    def action_back(self) -> None:
        search = self.query_one("#logs-search", Input)
        if search.has_class("-shown"):
            search.remove_class("-shown")
            self.view.focus()
            return
        self.app.pop_screen()

    def action_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            self._rewrite()  # what came while paused is in ``lines``
        self._set_state(self.state)

    def action_search(self) -> None:
        search = self.query_one("#logs-search", Input)
        search.add_class("-shown")
        search.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.search = event.value
        self._rewrite()
        self._set_state(self.state)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.input.remove_class("-shown")
        self.view.focus()

    def action_container(self) -> None:
        if len(self.containers) > 1:
            i = self.containers.index(self.container) if self.container in self.containers else -1
            self.container = self.containers[(i + 1) % len(self.containers)]
            self._restart()

    def action_since(self) -> None:
        cycle = (None, *SINCE_CHOICES)
        self.since = cycle[(cycle.index(self.since) + 1) % len(cycle)]
        self._restart()

    def action_tail(self) -> None:
        self.tail = TAILS[(TAILS.index(self.tail) + 1) % len(TAILS)]
        self._restart()

    def action_previous(self) -> None:
        self.previous = not self.previous
        self._restart()

    def action_timestamps(self) -> None:
        self.timestamps = not self.timestamps
        self._restart()

    def action_wrap(self) -> None:
        self.wrap = not self.wrap
        self._rewrite()
        self._set_state(self.state)
