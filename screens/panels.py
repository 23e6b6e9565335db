"""Dashboard panels: each turns one part of the :class:`~console.model.Snapshot` into table rows.

A panel owns no I/O.  ``rows()`` is its fetch side (pure, from the snapshot); ``Panel.show()`` its render
side: rows are updated by key inside one batch — ``update_cell`` only where a value changed, stale rows
removed, new rows added — so one pod changing repaints one cell, never the table.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from console.model import Severity, Snapshot, SourceState, SourceStatus

Row = tuple[str, ...]
RowsFn = Callable[[Snapshot], list[tuple[str, Row]]]


def _yn(value: bool | None) -> str:
    return "yes" if value else ("?" if value is None else "NO")


def nodes_rows(s: Snapshot) -> list[tuple[str, Row]]:
    return [
        (
            n.name,
            (
                n.name,
                "Ready" if n.ready else "NotReady",
                ",".join(n.roles) or "-",
                ",".join(t.split(":")[0].rsplit("/", 1)[-1] for t in n.taints) or "-",
                n.version,
                n.hetzner_status or "?",
                n.internal_ip,
                n.external_ip,
                str(n.pods),
            ),
        )
        for n in s.nodes
    ]


def workloads_rows(s: Snapshot) -> list[tuple[str, Row]]:
    names = sorted({n.name for n in s.nodes})
    out: list[tuple[str, Row]] = []
    for w in s.workloads:
        spread = " ".join(f"{nm.rsplit('-', 1)[-1]}:{w.nodes.count(nm)}" for nm in names)
        out.append(
            (f"{w.namespace}/{w.name}", (w.namespace, w.name, w.kind, f"{w.ready}/{w.desired}", spread))
        )
    return out


def database_rows(s: Snapshot) -> list[tuple[str, Row]]:
    db = s.database
    if db is None:
        return []
    rows: list[tuple[str, Row]] = [
        (
            m.name,
            (
                m.name,
                m.role,
                m.node or "-",
                "ready" if m.ready else "NOT READY",
                f"timeline {db.timeline}" if m.role == "primary" else "",
            ),
        )
        for m in db.members
    ]
    rows += [
        (p.name, (p.name, "pooler", p.node or "-", "ready" if p.ready else "NOT READY", ""))
        for p in db.poolers
    ]
    return rows


def lb_rows(s: Snapshot) -> list[tuple[str, Row]]:
    lb = s.load_balancer
    if lb is None:
        return []
    return [
        (str(t.server_id), (t.name, *(f"{port}:{status}" for port, status in t.health))) for t in lb.targets
    ]


def cert_rows(s: Snapshot) -> list[tuple[str, Row]]:
    return [
        (
            f"{c.namespace}/{c.name}",
            (
                c.namespace,
                ",".join(c.dns_names),
                "?" if c.days_left is None else f"{c.days_left:g}",
                _yn(c.ready),
            ),
        )
        for c in s.certificates
    ]


def findings_rows(s: Snapshot) -> list[tuple[str, Row]]:
    marks = {Severity.CRITICAL: "!!", Severity.WARNING: "!", Severity.INFO: "i"}
    return [(f"{f.code}:{f.subject}", (marks[f.severity], f.code, f.subject, f.message)) for f in s.findings]


# Panel id -> (title, columns, rows function, sources it depends on).  One table, as Dolphie's PANEL_MAPPING.
PANELS: dict[str, tuple[str, Sequence[str], RowsFn, tuple[str, ...]]] = {
    "nodes": (
        "Nodes",
        ("node", "status", "roles", "taints", "version", "hetzner", "private", "public", "pods"),
        nodes_rows,
        ("kube:nodes", "hetzner", "kube:pods"),
    ),
    "workloads": (
        "Workloads (ready/desired, pods per node)",
        ("namespace", "name", "kind", "ready", "spread"),
        workloads_rows,
        ("kube:deployments", "kube:daemonsets", "kube:pods", "kube:nodes"),
    ),
    "database": (
        "Database",
        ("instance", "role", "node", "state", ""),
        database_rows,
        ("kube:clusters", "kube:pods"),
    ),
    "lb": ("Load balancer", ("target", "port 80", "port 443"), lb_rows, ("hetzner",)),
    "certs": (
        "Certificates",
        ("namespace", "hosts", "days left", "ready"),
        cert_rows,
        ("kube:certificates",),
    ),
    "findings": ("Findings", ("", "code", "subject", "message"), findings_rows, ()),
}


class Panel(Vertical):
    """A titled table with its data's age and its sources' state."""

    DEFAULT_CSS = """
    Panel { height: auto; max-height: 16; border: round $primary; padding: 0 1; }
    Panel.-stale { border: round $warning; }
    Panel.-unreachable { border: round $error; }
    Panel.-forbidden { border: round $secondary; }
    Panel > .panel-meta { color: $text-muted; height: 1; }
    Panel DataTable { height: auto; max-height: 12; }
    """

    def __init__(self, panel_id: str) -> None:
        super().__init__(id=f"panel-{panel_id}")
        self.panel_id = panel_id
        self.title_text, self.columns, self.rows_fn, self.sources = PANELS[panel_id]
        self.border_title = self.title_text
        self.updated_at: float | None = None
        self.state = SourceState.PENDING
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("waiting for data…", classes="panel-meta")
        table: DataTable[str] = DataTable(cursor_type="row", zebra_stripes=True)
        yield table

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for i, col in enumerate(self.columns):
            table.add_column(col, key=str(i))

    @property
    def table(self) -> DataTable[str]:
        return self.query_one(DataTable)

    def show(self, snapshot: Snapshot, sources: dict[str, SourceStatus]) -> None:
        table = self.table
        rows = dict(self.rows_fn(snapshot))
        present = {k.value for k in table.rows}
        if self.panel_id == "findings" and set(rows) != present:
            table.clear()  # severity order matters more than keeping rows: a few rows, rebuilt on change
            present = set()
        for stale in [k for k in table.rows if k.value not in rows]:
            table.remove_row(stale)
        ncols = len(self.columns)
        for row_key, cells in rows.items():
            padded = (cells + ("",) * ncols)[:ncols]
            if row_key in present:
                for i, value in enumerate(padded):
                    if table.get_cell(row_key, str(i)) != value:
                        table.update_cell(row_key, str(i), value)
            else:
                table.add_row(*padded, key=row_key)
        states = [sources[s] for s in self.sources if s in sources]
        worst = next((s for s in states if s.state is SourceState.FORBIDDEN), None) or next(
            (s for s in states if s.state in (SourceState.UNREACHABLE, SourceState.STALE)), None
        )
        self.state = (
            worst.state if worst else (SourceState.OK if states or not self.sources else SourceState.PENDING)
        )
        self.error = worst.error if worst else None
        times = [s.updated_at for s in states if s.updated_at]
        self.updated_at = min(times) if times else (snapshot.taken_at if not self.sources else None)
        for cls in ("-stale", "-unreachable", "-forbidden"):
            self.set_class(self.state.value == cls[1:], cls)
        self.refresh_age()

    def refresh_age(self) -> None:
        if self.updated_at is None:
            text = f"{self.state.value}" + (f": {self.error}" if self.error else "")
        else:
            age = max(0, int(time.time() - self.updated_at))
            text = f"{age} s ago" + ("" if self.state is SourceState.OK else f" — {self.state.value}")
            if self.error:
                text += f": {self.error}"
        self.query_one(".panel-meta", Static).update(text)
