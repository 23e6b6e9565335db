"""The seed's forge (git.cloonar.com, Forgejo): DocFast's git repository, its two workflows and its registry.

What it emulates, and how:

* **Git over SSH.** ``git@git.cloonar.com:openclawd/docfast.git`` is a real bare repository under
  ``DIR/forge/home``, served by the lab's SSH server (host alias ``git.cloonar.com`` in ``DIR/ssh/config``,
  user ``git``, the operator's key): ``git clone``/``push`` run the real ``git-upload-pack`` and
  ``git-receive-pack``.
* **The history.** Five commits on ``main`` with fixed authors and dates (so their hashes are the same in
  every lab): ``v1.4.2`` tags the fourth — what production runs — and the fifth is ``main``'s head, built
  as ``main-<sha7>`` — what staging runs (``lab/kube/seed.py`` ``STAGING_TAG``; :meth:`Forge.seed` refuses
  to start if they disagree).
* **The workflows** (the seed's ``deploy.yml`` and ``promote.yml``), started by the repository's real
  ``post-receive`` hook through the lab's control API: a push to ``main`` builds ``main-<sha7>`` and sets
  staging's image; a pushed ``v*`` tag builds the tagged commit and sets production's image.  Each "build"
  takes ``BUILD_S`` (times the lab's speed) and deploys with real ``kubectl set image`` as the ``deployer``
  service account, as the seed's CI does.  Runs are listed at ``GET /forge`` on the control API.
* **The registry.** A build's digest is a function of its commit (:func:`lab.images.build_digest`), so
  ``main-<sha7>`` and ``vX.Y.Z`` of the same commit are one image under two tags — the kubelets report that
  digest as ``imageID``.  Nothing is compiled and no image content exists.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lab.images import build_digest

log = logging.getLogger("lab.forge")

FORGE_HOST = "git.cloonar.com"
FORGE_USER = "git"
REPO_PATH = "openclawd/docfast.git"
IMAGE = "git.cloonar.com/openclawd/docfast"
BUILD_S = 10.0
PROD_TAG_COMMIT = 4  # v1.4.2 tags the fourth commit; main's head is the fifth

# (message, file content) per commit; authors and dates fixed so every lab has the same hashes.
HISTORY = [
    ("Initial DocFast service", "version = 1.0.0\n"),
    ("Render invoices through the pooler", "version = 1.2.0\n"),
    ("Add /version endpoint", "version = 1.4.0\n"),
    ("Fix PDF font embedding", "version = 1.4.2\n"),
    ("Batch export for accountants", "version = 1.5.0-dev\n"),
]

HOOK = """#!{python}
# post-receive: hand each pushed ref to the forge's workflow runner (lab/forge.py) via the control API.
import json, os, sys, urllib.request
refs = [dict(zip(("old", "new", "ref"), line.split())) for line in sys.stdin if line.strip()]
req = urllib.request.Request(
    os.environ["LAB_CONTROL_URL"] + "/forge/push",
    data=json.dumps({{"refs": refs}}).encode(),
    headers={{"Authorization": "Bearer " + os.environ["LAB_CONTROL_TOKEN"],
              "Content-Type": "application/json"}},
)
with urllib.request.urlopen(req, timeout=10) as resp:
    for run in json.loads(resp.read())["started"]:
        print("workflow " + run, flush=True)
"""


def _git(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True, timeout=60
    )
    return out.stdout.strip()


class Forge:
    def __init__(self, lab_dir: Path, images: Any, namespaces: Any, speed: float) -> None:
        self.home = lab_dir / "forge" / "home"
        self.repo = self.home / REPO_PATH
        self.kubeconfig = lab_dir / "kubeconfig"
        self.images = images
        self.namespaces = namespaces
        self.speed = speed
        self.runs: list[dict[str, Any]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- the repository -------------------------------------------------------------------------------

    def seed(self, staging_tag: str, prod_tag: str) -> None:
        """Create the bare repository with its fixed history (kept if it exists), register the two builds
        the cluster runs, and install the hook."""
        if not (self.repo / "HEAD").exists():
            self._create(prod_tag)
        head = _git("rev-parse", "refs/heads/main", cwd=self.repo)
        prod = _git("rev-parse", f"refs/tags/{prod_tag}^{{commit}}", cwd=self.repo)
        if staging_tag != f"main-{head[:7]}":
            raise RuntimeError(f"forge: main is {head[:7]} but the seed's staging runs {staging_tag}")
        self.images.push(IMAGE, staging_tag, build_digest(head))
        self.images.push(IMAGE, prod_tag, build_digest(prod))
        hook = self.repo / "hooks" / "post-receive"
        hook.write_text(HOOK.format(python=sys.executable))
        hook.chmod(0o755)

    def _create(self, prod_tag: str) -> None:
        self.repo.mkdir(parents=True, exist_ok=True)
        _git("init", "-q", "--bare", "-b", "main", str(self.repo), cwd=self.home)
        work = self.home / ".seed-work"
        work.mkdir(exist_ok=True)
        _git("init", "-q", "-b", "main", cwd=work)
        for i, (message, content) in enumerate(HISTORY, start=1):
            when = f"2025-10-{i * 5:02d}T12:00:00Z"
            env = {
                **os.environ,
                "GIT_CONFIG_GLOBAL": os.devnull,  # the machine's git config must not change the hashes
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_AUTHOR_NAME": "DocFast Developer",
                "GIT_AUTHOR_EMAIL": "dev@docfast.dev",
                "GIT_COMMITTER_NAME": "DocFast Developer",
                "GIT_COMMITTER_EMAIL": "dev@docfast.dev",
                "GIT_AUTHOR_DATE": when,
                "GIT_COMMITTER_DATE": when,
            }
            (work / "VERSION").write_text(content)
            _git("add", "VERSION", cwd=work)
            _git("-c", "commit.gpgsign=false", "commit", "-q", "-m", message, cwd=work, env=env)
            if i == PROD_TAG_COMMIT:
                _git("-c", "tag.gpgsign=false", "tag", prod_tag, cwd=work, env=env)
        _git("push", "-q", str(self.repo), "main", f"refs/tags/{prod_tag}", cwd=work)
        subprocess.run(["rm", "-rf", str(work)], check=True)

    # ---- the workflows --------------------------------------------------------------------------------

    def on_push(self, refs: list[dict[str, str]]) -> list[str]:
        """Start the workflows a push triggers; returns their names (the hook prints them to the pusher)."""
        started = []
        for r in refs:
            ref, new = r["ref"], r["new"]
            if set(new) == {"0"}:
                continue  # a deleted ref triggers nothing
            if ref == "refs/heads/main":
                commit = new
                tag, namespace, workflow = f"main-{commit[:7]}", self.namespaces.staging, "deploy.yml"
            elif ref.startswith("refs/tags/v"):
                commit = _git("rev-parse", f"{new}^{{commit}}", cwd=self.repo)
                tag, namespace, workflow = ref.removeprefix("refs/tags/"), self.namespaces.prod, "promote.yml"
            else:
                continue
            run: dict[str, Any] = {
                "workflow": workflow,
                "ref": ref,
                "commit": commit,
                "image": f"{IMAGE}:{tag}",
                "namespace": namespace,
                "started": time.time(),
                "finished": None,
                "result": "running",
            }
            self.runs.append(run)
            task = asyncio.ensure_future(self._run(run, tag))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            started.append(f"{workflow} for {ref} ({commit[:7]}): build {tag}, deploy to {namespace}")
        return started

    async def _run(self, run: dict[str, Any], tag: str) -> None:
        await asyncio.sleep(BUILD_S * self.speed)  # the build
        self.images.push(IMAGE, tag, build_digest(run["commit"]))
        proc = await asyncio.create_subprocess_exec(
            "kubectl", "--kubeconfig", str(self.kubeconfig), "--context", "deployer",
            "-n", run["namespace"], "set", "image", "deployment/docfast", f"docfast={run['image']}",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await proc.communicate()
        run["finished"] = time.time()
        run["result"] = "success" if proc.returncode == 0 else "failure"
        run["output"] = out.decode(errors="replace").strip()[-500:]
        log.info("forge: %s %s -> %s: %s", run["workflow"], run["ref"], run["namespace"], run["result"])

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
