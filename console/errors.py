"""One error family, one verdict list and one exit-code table for every way in (TUI, ``--action``, ``watch``).

Why one table: a script reads the exit code, an operator reads the verdict, and both must mean the same
thing whichever action ran.  Every action ends with exactly one :class:`~console.events.Finished` whose
verdict fixes its exit code (:data:`VERDICT_EXIT`); every error the console raises is an :class:`OpsError`
that knows its own code (:func:`exit_code_for`), phrased as one sentence for the operator.

Foreign exceptions that cross a boundary (the ``hcloud`` library's ``APIException``, ``requests``'
connection errors) are turned into an :class:`OpsError` by :func:`as_ops_error` — by module name, so this
module imports neither library (every import is paid by ``--action status``'s start-up, bench/status.py).
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class ExitCode(IntEnum):
    """What the process's exit status means, in every mode (the README's table; each member's ``__doc__``
    says it, and ``--help`` prints them)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    REFUSED = 3
    ROLLED_BACK = 4
    INTERRUPTED = 130

    @property
    def meaning(self) -> str:
        return EXIT_MEANINGS[self]


EXIT_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "the action did what it said, found nothing to do, or printed its plan",
    ExitCode.FAILED: "the action failed, or a check it ran failed (a critical finding for status, drift for "
    "an HA dry run, a failed verify-restore), or it ended with a warning",
    ExitCode.USAGE: "a wrong flag, a missing parameter or confirmation (--yes), or a config that does not "
    "validate: nothing was changed",
    ExitCode.REFUSED: "refused before anything changed: a failed preflight check, the cluster lock held, an "
    "unfinished action in the journal, no rights (401/403), or a read-only session",
    ExitCode.ROLLED_BACK: "something changed, then failed or was aborted, and was rolled back",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C, SIGTERM); what had been applied was rolled back",
}
for _code, _text in EXIT_MEANINGS.items():
    _code.__doc__ = _text


class Verdict(StrEnum):
    """How an action ended; each verdict has exactly one exit code (:data:`VERDICT_EXIT`)."""

    PASS = "PASS"  # a drill or a replacement met its goals
    DONE = "DONE"  # the action did what it said
    CLEAN = "CLEAN"  # a check found nothing to change
    PLAN = "PLAN"  # a dry run: preflight and plan shown, nothing changed
    FAIL = "FAIL"
    DRIFT = "DRIFT"  # a dry run found what the action would change (HA drift)
    WARNING = "WARNING"  # done, with a warning (borg exit 1)
    UNCONFIRMED = "UNCONFIRMED"  # a mutating action without --yes: the plan, nothing changed
    INVALID = "INVALID"  # a parameter the action cannot take
    REFUSED = "REFUSED"
    ROLLED_BACK = "ROLLED-BACK"
    ABORTED = "ABORTED"  # the operator aborted; rolled back
    INTERRUPTED = "INTERRUPTED"

    @property
    def exit_code(self) -> ExitCode:
        return VERDICT_EXIT[self]


VERDICT_EXIT: dict[Verdict, ExitCode] = {
    Verdict.PASS: ExitCode.OK,
    Verdict.DONE: ExitCode.OK,
    Verdict.CLEAN: ExitCode.OK,
    Verdict.PLAN: ExitCode.OK,
    Verdict.FAIL: ExitCode.FAILED,
    Verdict.DRIFT: ExitCode.FAILED,
    Verdict.WARNING: ExitCode.FAILED,
    Verdict.UNCONFIRMED: ExitCode.USAGE,
    Verdict.INVALID: ExitCode.USAGE,
    Verdict.REFUSED: ExitCode.REFUSED,
    Verdict.ROLLED_BACK: ExitCode.ROLLED_BACK,
    Verdict.ABORTED: ExitCode.ROLLED_BACK,
    Verdict.INTERRUPTED: ExitCode.INTERRUPTED,
}


class OpsError(Exception):
    """Base of every error the console raises on purpose: its text is one sentence for the operator
    (never a secret, never a traceback), its class says the exit code."""

    exit_code: ExitCode = ExitCode.FAILED
    verdict: Verdict = Verdict.FAIL

    def sentence(self) -> str:
        text = str(self).strip()
        return text.splitlines()[0] if text else type(self).__name__


class UsageError(OpsError):
    """A wrong flag or parameter: nothing ran."""

    exit_code = ExitCode.USAGE
    verdict = Verdict.INVALID


class Refused(OpsError):
    """The action may not run now (failed preflight, lock held, unfinished action, no rights)."""

    exit_code = ExitCode.REFUSED
    verdict = Verdict.REFUSED


class Aborted(OpsError):
    """The operator aborted (or the cluster lock was lost): roll back at once."""

    exit_code = ExitCode.ROLLED_BACK
    verdict = Verdict.ABORTED


class ActionFailed(OpsError):
    """A step of an action failed in a way the action describes (a rollout that did not finish, a probe
    that did not start): the runner rolls back what the action applied."""


class Unreachable(OpsError):
    """An endpoint did not answer (the Hetzner API, the Storage Box): one sentence naming it."""


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code an error ends the process with."""
    if isinstance(error, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    ops = error if isinstance(error, OpsError) else as_ops_error(error)
    return ops.exit_code if ops is not None else ExitCode.FAILED


def as_ops_error(error: BaseException) -> OpsError | None:
    """An :class:`OpsError` for a foreign exception the console knows how to phrase, else None."""
    if isinstance(error, OpsError):
        return error
    module = type(error).__module__ or ""
    if module.startswith("hcloud") and hasattr(error, "code"):
        code = str(getattr(error, "code", ""))
        message = str(getattr(error, "message", "") or error)
        if code in ("unauthorized", "forbidden", "token_readonly"):
            return Refused(f"the Hetzner API refused: {message} ({code})")
        return OpsError(f"the Hetzner API answered: {message} ({code})")
    if module.startswith(("requests", "urllib3")):
        return Unreachable("the Hetzner API is unreachable: " + (str(error).splitlines() or ["?"])[0][:160])
    return None


def record_crash(where: str, exc: BaseException) -> str:
    """A bug's traceback into ``errors.log`` in the state directory (never the screen, never stdout); the
    one sentence that names the error and the file."""
    import traceback

    from console.paths import state_home

    path = state_home() / "errors.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(f"--- {where}\n{''.join(traceback.format_exception(exc))}\n")
    except OSError:
        pass
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first} (details in {path})"
