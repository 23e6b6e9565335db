"""What an action is: typed parameters, metadata, and the phases :mod:`console.runner` drives.

An action is a subclass of :class:`Action` in ``actions/`` (one module each) with a ``Params`` dataclass
whose fields are declared with :func:`param` (flag, help, choices).  From that one class the entry point
builds the ``--action`` flags and ``--help``, the TUI builds the command palette entry, the runner screen's
form and its typed confirmation, and the read-only gate refuses it when ``mutating``.  Adding an action
touches its module and the registry (``actions/registry.py``), nothing else.

The phases, in the runner's order (``console/runner.py`` does the rest — journal, lock, confirmation):

* :meth:`Action.validate` — the parameters make sense (a :class:`~console.errors.UsageError` otherwise);
* :meth:`Action.preflight` — checks of the live cluster (``Check`` events): a failed critical one refuses;
* :meth:`Action.plan` — what will change (``PlanItem``/``Diff`` events); a dry run stops after it;
* :meth:`Action.execute` — the change; events through ``run.emit``; each change journaled *before* it is
  made (``run.applied``) so a killed console leaves what :meth:`Action.undo` needs;
* :meth:`Action.verify` — the change holds (None) or why not;
* :meth:`Action.rollback` — on a failure, a failed verification or an abort: undo what was applied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from console.errors import Verdict
from console.events import Check, Diff, PlanItem

if TYPE_CHECKING:
    from console.config import Config
    from console.runner import Run


@dataclass(frozen=True)
class ParamSpec:
    """How one parameter is asked for: its ``--flag``, help, choices, and its place in the TUI form."""

    flag: str
    help: str
    choices: Sequence[str] | Callable[[Config], Sequence[str]] | None = None
    required: bool = False
    tui: bool = True  # shown in the runner screen's form
    tui_default: Any = None  # the form's default when it differs from the script's (or f(config))

    def options(self, config: Config | None) -> Sequence[str] | None:
        if callable(self.choices):
            return self.choices(config) if config is not None else None
        return self.choices

    def form_default(self, config: Config, default: Any) -> Any:
        if callable(self.tui_default):
            return self.tui_default(config)
        return default if self.tui_default is None else self.tui_default


def param(
    flag: str,
    help: str,
    default: Any = None,
    *,
    choices: Sequence[str] | Callable[[Config], Sequence[str]] | None = None,
    required: bool = False,
    tui: bool = True,
    tui_default: Any = None,
) -> Any:
    """A field of an action's ``Params`` dataclass that is also a command-line flag and a form field."""
    spec = ParamSpec(flag, help, choices, required, tui, tui_default)
    return field(default=default, metadata={"param": spec})


def param_specs(params_type: type[Any]) -> list[tuple[dataclasses.Field[Any], ParamSpec]]:
    return [(f, f.metadata["param"]) for f in dataclasses.fields(params_type) if "param" in f.metadata]


@dataclass(frozen=True)
class NoParams:
    """An action that takes no parameters."""


@dataclass
class Plan:
    """What :meth:`Action.plan` found: the items shown before the confirmation, and how a dry run ends.

    ``nothing_to_do``: the action ends here (``done_verdict``, exit 0) without asking — HA that already
    holds, production that already runs staging's build."""

    items: Sequence[PlanItem | Diff] = field(default_factory=list)
    summary: str = "dry run: preflight and plan only"
    report: Any = None
    verdict: Verdict = Verdict.PLAN  # a dry run's verdict (DRIFT: an HA dry run that found drift)
    nothing_to_do: str | None = None
    done_verdict: Verdict = Verdict.DONE


@dataclass
class Outcome:
    """How :meth:`Action.execute` ended, when it did not raise."""

    verdict: Verdict
    summary: str
    report: Any = None
    report_path: str | None = None


P = TypeVar("P")


class Action(Generic[P]):
    """Base of every action.  Subclasses set the class attributes and override the phases they have."""

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[Any]] = NoParams
    mutating: ClassVar[bool] = True  # hidden and refused in a read-only session
    takes_lock: ClassVar[bool] = True  # the cluster Lease, held from before execute to after rollback
    journaled: ClassVar[bool] = True  # a journal entry (every mutating action but recover's own)
    needs_yes: ClassVar[bool] = True  # headless: nothing changes without --yes (prune: no, see there)
    resumes: ClassVar[bool] = False  # runs although the journal holds an unfinished action (recover)
    output: ClassVar[str] = "events"  # "report": headless prints the report alone (status)
    guide: ClassVar[str] = ""  # what the runner screen says above the plan
    nothing_without: ClassVar[str] = ""  # headless wording for a missing --yes ("" : a default sentence)

    def __init__(self, config: Config, params: P) -> None:
        self.config = config
        self.params = params

    # ---- metadata the runner and the screens ask for --------------------------------------------------

    def confirm_word(self) -> str | None:
        """What a TUI user types before it runs (the target's name); None: it starts without one."""
        return self.name if self.mutating else None

    def journal_params(self) -> dict[str, Any]:
        """What the journal records of the parameters (secret-looking keys are redacted anyway)."""
        params: Any = self.params
        if dataclasses.is_dataclass(params) and not isinstance(params, type):
            return dataclasses.asdict(params)
        return {}

    def unconfirmed(self) -> str:
        """The sentence for a missing ``--yes``."""
        return self.nothing_without or f"{self.name} changes the cluster: add --yes to run it"

    def dry_run_requested(self) -> bool:
        """A parameter of the action's own that means ``--dry-run`` (provision's ``--plan``)."""
        return False

    def force(self) -> bool:
        """Whether failed non-critical checks are run past (``--force``, where an action takes it)."""
        return bool(getattr(self.params, "force", False))

    # ---- the phases -----------------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise :class:`~console.errors.UsageError` for parameters this action cannot take."""

    async def preflight(self, run: Run) -> list[Check]:
        return []

    async def plan(self, run: Run) -> Plan:
        return Plan()

    async def execute(self, run: Run) -> Outcome:
        raise NotImplementedError

    async def verify(self, run: Run) -> str | None:
        return None

    async def rollback(self, run: Run) -> str:
        """Undo what this run applied (the journal's applied steps, newest first); what was done, in words."""
        done = []
        for data in reversed(run.applied_steps()):
            done.append(await self.undo(run, data))
            run.step("rollback", "rolled-back", {"key": data.get("key")})
        return "; ".join(d for d in done if d) or "nothing was applied"

    def can_roll_back(self) -> bool:
        """False once the action is past the point where a rollback could restore what was (a server
        deleted): a failure then is reported as it is, with what converges it."""
        return True

    async def undo(self, run: Run, data: dict[str, Any]) -> str:
        """Undo one journaled change (idempotent: a recovery after a killed console calls it too)."""
        return ""

    def result(self) -> Any:
        """The report for however far the action got (a failure's report too); None: none."""
        return None

    async def close(self) -> None:
        """Release what the action opened (its own sources, connections)."""


class Inspection(Action[P]):
    """An action that only looks (status, archives, a check, an export): a read-only session may run it,
    and it takes no lock, writes no journal entry and needs no ``--yes``."""

    mutating = False
    takes_lock = False
    journaled = False
    needs_yes = False
