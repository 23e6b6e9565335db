"""The ``?`` screen: every key, every panel and what its colours mean."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Static

from screens.base import OpsModal
from screens.panels import PANELS

KEYS = [
    ("tab / shift+tab", "next / previous panel"),
    ("1 … 9, 0", "jump to a panel (the first ten)"),
    ("↑ ↓ pgup pgdn", "move within a panel"),
    ("/", "filter every panel's rows (Escape clears)"),
    ("r", "look again at the slow sources now (Borg, PostgreSQL)"),
    ("d", "failover drill: ↑↓ scenario, ←→ target, Enter arms, type the target, Escape/a aborts"),
    ("D", "drill reports: every saved report, Enter reads one"),
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
        lines += [f"  {i + 1}  {spec[0]}" for i, spec in enumerate(PANELS.values())]
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
