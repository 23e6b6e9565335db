"""The lab's container registry: which content digest an image reference names.

A kubelet reports the digest it pulled in each container status (``imageID``:
``git.cloonar.com/openclawd/docfast@sha256:…``); promotion's "the exact digest that soaked in staging" is
checked against it.  The lab has no image content, so a digest is a name for a build:

* a reference the lab never built gets the SHA-256 of the reference itself (one tag, one build);
* the forge's workflows (:mod:`lab.forge`) build per commit: ``main-<sha7>`` and a ``v*`` tag of the same
  commit carry the same digest, as a registry holding one image under two tags would;
* a reference pinned by digest (``repo:tag@sha256:…`` or ``repo@sha256:…``) is that digest.
"""

from __future__ import annotations

import hashlib


def split(image: str) -> tuple[str, str, str]:
    """``repo[:tag][@sha256:hex]`` -> (repo, tag or "", hex digest or "")."""
    name, _, digest = image.partition("@")
    repo, tag = name, ""
    if ":" in name.rsplit("/", 1)[-1]:
        repo, tag = name.rsplit(":", 1)
    return repo, tag, digest.removeprefix("sha256:")


def build_digest(commit: str) -> str:
    """The digest of the image the forge builds from ``commit``."""
    return hashlib.sha256(f"docfast build {commit}".encode()).hexdigest()


class ImageRegistry:
    """Tags pushed by the forge; everything else is its own build."""

    def __init__(self) -> None:
        self.tags: dict[str, str] = {}  # "repo:tag" -> hex digest

    def push(self, repo: str, tag: str, digest: str) -> None:
        self.tags[f"{repo}:{tag}"] = digest

    def missing(self, image: str) -> bool:
        """A tag no registry has (the lab's convention: one ending ``-does-not-exist``): a kubelet cannot
        pull it."""
        return split(image)[1].endswith("-does-not-exist")

    def digest(self, image: str) -> str:
        repo, tag, digest = split(image)
        if digest:
            return digest
        ref = f"{repo}:{tag or 'latest'}"
        return self.tags.get(ref) or hashlib.sha256(ref.encode()).hexdigest()

    def image_id(self, image: str) -> str:
        """What a kubelet reports as ``imageID`` for a container started from ``image``."""
        return f"{split(image)[0]}@sha256:{self.digest(image)}"

    def version(self, image: str) -> str:
        """The tag a DocFast pod reports at ``/version`` (digest-only references: the tag pushed with it)."""
        _repo, tag, digest = split(image)
        if tag:
            return tag
        if digest:
            return next((ref.rsplit(":", 1)[1] for ref, d in self.tags.items() if d == digest), "untagged")
        return "latest"
