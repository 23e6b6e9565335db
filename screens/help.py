"""The ``?`` screen: every key, every panel and what its colours mean."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Static

from screens.base import OpsModal
from screens.panels import PANELS, ROW_ACTIONS

KEYS = [
    ("tab / shift+tab", "next / previous panel"),
    ("1 … 9, 0", "jump to a panel (the first ten)"),
    ("↑ ↓ pgup pgdn", "move within a panel"),
    ("/", "filter every panel's rows (Escape clears)"),
    ("enter", "the row's object: describe, live events, YAML (d e y; l: a pod's logs; Escape back)"),
    ("l", "a pod's log, followed (Pods, Database): space pause, / search, c s t w P T, Escape back"),
    ("N", "the Pods panel's namespace: the next one, then every namespace again"),
    ("r", "look again at the slow sources now (Borg, PostgreSQL)"),
    ("d", "failover drill: ↑↓ scenario, ←→ target, Enter arms, type the target, Escape/a aborts"),
    ("D", "drill reports: every saved report, Enter reads one"),
    ("z", "the focused panel alone, full height (z again: every panel)"),
    ("ctrl+p", "command palette: every action and panel"),
    ("?", "this help (Escape closes)"),
    ("q", "quit"),
]


class HelpScreen(OpsModal):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90; height: auto; max-height: 90%; border: round $accent;
                                  background: $surface; padding: 1 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "close"),
        Binding("question_mark", "dismiss", "close", show=False),
        Binding("q", "dismiss", "close", show=False),
    ]

    def __init__(self, read_only: bool) -> None:
        super().__init__()
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        lines = ["[b]Keys[/b]"]
        lines += [f"  [b]{k:<16}[/b] {what}" for k, what in KEYS]
        lines += ["", "[b]Panels[/b]"]
        for i, (panel_id, spec) in enumerate(PANELS.items()):
            keys = [] if self.read_only else ROW_ACTIONS.get(panel_id, ())
            on_row = (
                "  — on the row: " + ", ".join(f"[b]{k}[/b] {label}" for k, _, label in keys) if keys else ""
            )
            lines.append(f"  {(i + 1) % 10 if i < 10 else ' '}  {spec[0]}{on_row}")
        lines += [
            "",
            "[b]Borders[/b]  blue: live · yellow: stale (last answer shown) · red: unreachable · "
            "grey: forbidden for this context",
            "Every panel says how old its data is; nothing redraws on a clock.",
        ]
        if self.read_only:
            lines += ["", "[b]Read-only session[/b]: mutating actions are hidden and refused."]
        with VerticalScroll():
            yield Static("\n".join(lines), id="help-text")
