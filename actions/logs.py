"""``logs --target NS/POD``: a pod's log, headless — as ``kubectl logs`` would print it, through the log
subresource; ``--follow`` streams until the container's run ends (or Ctrl-C).

Read-only (an inspection: no lock, no journal).  A wrong container, a container still waiting, a missing
previous run are the API server's own refusals, said in one sentence (exit 3: refused by the cluster)."""

from __future__ import annotations

from dataclasses import dataclass

from console.action import Inspection, Outcome, param
from console.clients.kube import KubeError
from console.errors import Refused, UsageError, Verdict
from console.events import Output
from console.kubeobj import split_target
from console.logs import LogQuery, pod_log, pretty, since_seconds
from console.runner import Run


@dataclass(frozen=True)
class LogParams:
    target: str | None = param("--target", "NAMESPACE/POD", required=True)
    container: str | None = param("--container", "the container (a pod with several must name one)")
    follow: bool = param("--follow", "keep streaming new lines", False)
    since: str | None = param("--since", "only lines newer than this (30s, 5m, 1h, 2d)")
    tail: int | None = param("--tail", "only the last N lines")
    previous: bool = param("--previous", "the previous run of a restarted container", False)
    timestamps: bool = param("--timestamps", "each line with its time", False)


class Logs(Inspection[LogParams]):
    name = "logs"
    title = "Pod logs"
    description = "a pod's log through the API (container, since, tail, previous, follow)"
    Params = LogParams

    def query(self) -> LogQuery:
        ns, pod = split_target(self.name, self.params.target, "POD")
        p = self.params
        if p.tail is not None and p.tail < 0:
            raise UsageError("--tail takes a number of lines, 0 or more")
        return LogQuery(
            ns,
            pod,
            container=p.container,
            follow=p.follow,
            tail=p.tail,
            since_s=since_seconds(p.since) if p.since else None,
            previous=p.previous,
            timestamps=p.timestamps,
        )

    def validate(self) -> None:
        self.query()

    async def execute(self, run: Run) -> Outcome:
        q = self.query()
        target = f"{q.namespace}/{q.pod}"
        lines = 0
        try:
            async for line in pod_log(await run.kube(), q):
                lines += 1
                run.emit(Output(target, pretty(line)))
        except KubeError as exc:
            if exc.status in (400, 404, 422):
                raise Refused(f"{target}: {exc.message}") from None
            raise
        return Outcome(Verdict.CLEAN, f"{target}: {lines} lines", {"pod": target, "lines": lines})
