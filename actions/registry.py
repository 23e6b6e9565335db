"""Every action the console offers, in one table, in the order the palette and ``--help`` list them.

The entry point builds ``--action``'s choices and flags from it, the dashboard its command palette and the
runner screen's forms, the read-only gate its refusals (``console/runner.py``), and the exit-code test its
cases (``tests/unit/test_exit_codes.py``).  An action not listed here runs only as a stage of another
(``actions/manifests.py`` inside ``provision``).

Each entry names its class as ``module:Class`` and is imported on first use: ``--action status`` loads
the status action alone (the others bring the Borg, SSH, git and Hetzner clients, which a status need not
wait for), while ``--help`` and the palette load them all.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from console.action import Action

ENTRIES: dict[str, str] = {
    "status": "actions.status:Status",
    "drill": "actions.drill:Drill",
    "backup": "actions.backup:Backup",
    "prune": "actions.backup:Prune",
    "archives": "actions.backup:Archives",
    "backup-check": "actions.backup:BackupCheck",
    "verify-restore": "actions.restore:VerifyRestore",
    "restore": "actions.restore:Restore",
    "restore-cluster": "actions.restore:RestoreCluster",
    "ha": "actions.ha:Ha",
    "ha-export": "actions.ha:HaExport",
    "promote": "actions.promote:Promote",
    "rollback": "actions.promote:Rollback",
    "provision": "actions.provision:Provision",
    "replace-node": "actions.replace_node:ReplaceNode",
    "upgrade": "actions.upgrade:Upgrade",
    "recover": "actions.recover:Recover",
    "cordon": "actions.node:Cordon",
    "uncordon": "actions.node:Uncordon",
    "drain": "actions.node:Drain",
    "power-cycle": "actions.node:PowerCycle",
    "restart": "actions.workload:Restart",
    "scale": "actions.workload:Scale",
    "delete-pod": "actions.workload:DeletePod",
    "switchover": "actions.database:Switchover",
    "fence": "actions.database:Fence",
    "unfence": "actions.database:Unfence",
    "renew": "actions.certs:Renew",
    "logs": "actions.logs:Logs",
}


class Registry(Mapping[str, type[Action[Any]]]):
    """``name -> action class``, each imported when first asked for."""

    def __init__(self, entries: dict[str, str]) -> None:
        self._entries = entries
        self._loaded: dict[str, type[Action[Any]]] = {}

    def __getitem__(self, name: str) -> type[Action[Any]]:
        if name not in self._loaded:
            module, _, attr = self._entries[name].partition(":")
            cls: type[Action[Any]] = getattr(importlib.import_module(module), attr)
            if cls.name != name:
                raise AssertionError(
                    f"registry entry {name!r} names {cls.__name__}, whose name is {cls.name!r}"
                )
            self._loaded[name] = cls
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


ACTIONS = Registry(ENTRIES)
