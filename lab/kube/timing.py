"""The control plane's clocks, as the Kubernetes the lab claims to be (v1.34.4+k3s1) sets them by default.

Every node-down drill, failover time and eviction the lab predicts follows from these, so they are the
real defaults of that version, each with where it is set (lab/README.md lists them with their sources):

==========================================  ========  ==================================================
kube-controller-manager                     default   source
==========================================  ========  ==================================================
``--node-monitor-grace-period``             50 s      since 1.32: kubernetes/kubernetes#126287
``--node-monitor-period``                   5 s       ``SetDefaults_KubeCloudSharedConfiguration``
kubelet ``--node-lease-duration-seconds``   40        renewed every quarter of it: 10 s
kube-apiserver
``--default-not-ready-toleration-seconds``  300       DefaultTolerationSeconds admission
``--default-unreachable-toleration-seconds``300       DefaultTolerationSeconds admission
==========================================  ========  ==================================================

K3s sets none of the node-lifecycle flags itself; an operator tunes them as K3s takes them —
``--kube-controller-manager-arg=node-monitor-grace-period=20s`` (repeatable; ``key=value``, a later
one wins), ``--kubelet-arg=…``, ``--kube-apiserver-arg=…`` — and ``opsconsole lab up`` takes the same
flags.  Other keys are accepted and ignored, as the lab emulates only these clocks (the kubelet's
status updates, for one, are not modelled: its Lease is the liveness signal, as with the real one).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def go_duration(text: str) -> float:
    """Seconds in a Go duration (``50s``, ``1m30s``, ``500ms``); ValueError otherwise."""
    text = text.strip()
    if text in ("0", ""):
        return 0.0
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    parts = _PART.findall(body)
    if not parts or "".join(n + u for n, u in parts) != body:
        raise ValueError(f"time: invalid duration {text!r}")
    return sign * sum(float(n) * _UNITS[u] for n, u in parts)


@dataclass(frozen=True)
class Timing:
    node_monitor_grace_period: float = 50.0
    node_monitor_period: float = 5.0
    node_lease_duration: float = 40.0
    default_not_ready_toleration_seconds: float = 300
    default_unreachable_toleration_seconds: float = 300

    @property
    def lease_renew_interval(self) -> float:
        """The kubelet renews its Lease every quarter of its duration (nodeLeaseRenewIntervalFraction)."""
        return self.node_lease_duration * 0.25

    def with_args(
        self,
        controller_manager: Iterable[str] = (),
        kubelet: Iterable[str] = (),
        apiserver: Iterable[str] = (),
    ) -> Timing:
        """These clocks with K3s-style ``key=value`` flags applied (ValueError for a bad value)."""
        durations = {
            "node-monitor-grace-period": "node_monitor_grace_period",
            "node-monitor-period": "node_monitor_period",
        }
        integers = {
            "node-lease-duration-seconds": "node_lease_duration",
            "default-not-ready-toleration-seconds": "default_not_ready_toleration_seconds",
            "default-unreachable-toleration-seconds": "default_unreachable_toleration_seconds",
        }
        out = self
        for arg in [*controller_manager, *kubelet, *apiserver]:
            key, _, value = arg.removeprefix("--").partition("=")
            if key in durations:
                try:
                    seconds = go_duration(value)
                except ValueError as exc:
                    raise ValueError(f"{key}={value}: {exc}") from None
                if seconds <= 0:
                    raise ValueError(f"{key} must be a positive duration, not {value!r}")
                out = replace(out, **{durations[key]: seconds})
            elif key in integers:
                try:
                    number = int(value)
                except ValueError:
                    raise ValueError(f"{key} takes a whole number of seconds, not {value!r}") from None
                if number < 0 or (number == 0 and key == "node-lease-duration-seconds"):
                    raise ValueError(f"{key}={value}: must be {'above' if number == 0 else 'at least'} 0")
                out = replace(out, **{integers[key]: float(number)})
        return out


COMPONENT_FLAGS = ("kube-controller-manager-arg", "kubelet-arg", "kube-apiserver-arg")


def component_args(argv: Iterable[str]) -> dict[str, list[str]]:
    """The K3s component flags in a k3s command line (``--kubelet-arg=x=y`` or ``--kubelet-arg x=y``)."""
    out: dict[str, list[str]] = {flag: [] for flag in COMPONENT_FLAGS}
    args = list(argv)
    for i, arg in enumerate(args):
        for flag in COMPONENT_FLAGS:
            if arg.startswith(f"--{flag}="):
                out[flag].append(arg.split("=", 1)[1])
            elif arg == f"--{flag}" and i + 1 < len(args):
                out[flag].append(args[i + 1])
    return out


def from_command_line(argv: Iterable[str]) -> Timing:
    """The clocks a K3s server started with ``argv`` runs (ValueError for a bad flag value)."""
    found = component_args(argv)
    return Timing().with_args(*(found[flag] for flag in COMPONENT_FLAGS))
