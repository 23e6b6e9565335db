"""``kubernetes.aio``'s client and config, imported without the two packages' eager ``__init__`` modules.

``kubernetes/__init__.py`` imports the whole synchronous client — urllib3, requests-oauthlib, and through
``kubernetes.dynamic`` kubernetes-validate and jsonschema — and ``kubernetes/aio/__init__.py`` its own
dynamic client, stream and watch modules: a large part of start-up before the first watch, none
of it used (the console lists and watches through ``ApiClient``'s request path with raw JSON).

Registering the two packages as bare package modules (their real ``__path__``, nothing executed) lets
Python import only the submodules asked for: ``kubernetes.aio.client`` (itself lazy: its classes load on
first use) and ``kubernetes.aio.config``.  A package already imported — by a test, or another tool in the
same process — is used as it is, and any later ``import kubernetes.x`` still finds every submodule.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any


def _bare_package(name: str) -> None:
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError(f"{name} is not installed (pip package kubernetes)")
    module = types.ModuleType(name)
    module.__path__ = list(spec.submodule_search_locations)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    module.__spec__.submodule_search_locations = module.__path__
    module.__package__ = name
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


def load() -> tuple[Any, Any]:
    """(``kubernetes.aio.client``, ``kubernetes.aio.config``)."""
    _bare_package("kubernetes")
    _bare_package("kubernetes.aio")
    return importlib.import_module("kubernetes.aio.client"), importlib.import_module("kubernetes.aio.config")
