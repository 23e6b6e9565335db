"""Every action the console offers, in one table: the CLI's ``--action`` choices, the command palette
and the read-only gate all read it, so a read-only session can neither see nor run a mutating action."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ActionInfo:
    name: str
    title: str
    description: str
    mutating: bool


ACTIONS: dict[str, ActionInfo] = {
    a.name: a
    for a in (
        ActionInfo(
            "status",
            "Status snapshot",
            "the dashboard's snapshot; exit 1 when a critical finding holds",
            mutating=False,
        ),
        ActionInfo(
            "drill",
            "Failover drill",
            "a failover drill (--scenario, --target): preflight, probes, fault, recovery, rollback, report",
            mutating=True,
        ),
        ActionInfo(
            "backup", "Back up now", "pg_dump and/or cluster backup into Borg (--what db|cluster|all)", True
        ),
        ActionInfo(
            "prune", "Prune backups", "borg prune per retention (--dry-run previews), then compact", True
        ),
        ActionInfo(
            "archives",
            "List backup archives",
            "every schedule archive per repository: time, original and deduplicated size, files",
            False,
        ),
        ActionInfo("backup-check", "Check backups", "borg check of every repository (--verify-data)", False),
        ActionInfo(
            "verify-restore",
            "Verify a restore",
            "restore the latest dump into a scratch database, compare row counts, find the sentinel",
            True,
        ),
        ActionInfo(
            "restore",
            "Restore a database",
            "restore --db from --archive (latest) --into a database (staging by default)",
            True,
        ),
        ActionInfo(
            "restore-cluster",
            "Restore the cluster",
            "K3s cluster reset from the etcd snapshot in a k3s-cluster archive",
            True,
        ),
        ActionInfo(
            "ha",
            "Re-apply the HA patches",
            "the seed's runtime HA patches: --dry-run shows the drift (exit 1), --yes applies and verifies",
            mutating=True,
        ),
        ActionInfo("ha-export", "Export HA as code", "the desired HA state as manifests in --dir", False),
        ActionInfo(
            "promote",
            "Promote a release",
            "staging's exact digest (or a v* tag via the pipeline) to production: gates, plan, roll back",
            True,
        ),
        ActionInfo(
            "rollback", "Roll back production", "production back to its previous revision's image", True
        ),
        ActionInfo(
            "provision",
            "Provision the cluster",
            "Hetzner resources and K3s from config: --plan shows create/keep/change/delete, --yes applies",
            mutating=True,
        ),
        ActionInfo(
            "replace-node",
            "Replace a node",
            "a worker (--target) onto a fresh server: drain, out of the LB, new server, join, back in",
            mutating=True,
        ),
        ActionInfo(
            "recover",
            "Recover an unfinished action",
            "roll back what a killed console left applied (from the journal), then wait for steady state",
            mutating=True,
        ),
    )
}


def refused(action: ActionInfo, read_only: bool) -> str | None:
    """Why ``action`` may not run in this session, or None."""
    if action.mutating and read_only:
        return f"{action.name} changes the cluster and this session is read-only (--read-only)"
    return None
