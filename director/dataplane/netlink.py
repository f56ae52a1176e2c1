"""pyroute2's rtnetlink socket, loaded without the package's import-everything ``__init__``.

``import pyroute2`` runs an ``__init__`` that loads every protocol pyroute2 speaks (NDB
with sqlite3, IPDB, nl80211, WireGuard, 9P, ...): 163 modules and 12 MiB resident. The
director needs one class of them, ``IPRoute``. So, when nothing has imported pyroute2
yet, this module registers the package without running its ``__init__`` and imports
``pyroute2.iproute.linux`` and the two names plumbing uses: half the modules and memory.

The package still behaves as always for everyone else: a submodule asked of it (``from
pyroute2 import config``) is imported alone, and the first time anything asks it for
another name (``from pyroute2 import NDB``), its real ``__init__`` runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Any


def _register_lean(package: str) -> None:
    """Put ``package`` in ``sys.modules`` with its ``__init__`` deferred to first need."""
    if package in sys.modules:
        return
    spec = importlib.util.find_spec(package)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return  # not an installed package: the imports below fail with the usual error
    module = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def __getattr__(name: str) -> Any:  # PEP 562: a name the lean package has not loaded
        if name.startswith("__"):
            raise AttributeError(name)
        if importlib.util.find_spec(f"{package}.{name}") is not None:
            return importlib.import_module(f"{package}.{name}")  # a submodule: just it
        del module.__dict__["__getattr__"]
        loader.exec_module(module)
        return getattr(module, name)

    module.__dict__["__getattr__"] = __getattr__
    sys.modules[package] = module


_register_lean("pyroute2")
_linux: ModuleType = importlib.import_module("pyroute2.iproute.linux")
_exceptions: ModuleType = importlib.import_module("pyroute2.netlink.exceptions")
_ndmsg: ModuleType = importlib.import_module("pyroute2.netlink.rtnl.ndmsg")

IPRoute: Any = _linux.IPRoute
NetlinkError: Any = _exceptions.NetlinkError
NTF_PROXY: int = _ndmsg.NTF_PROXY
