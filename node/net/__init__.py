"""The libp2p adapter: the only package of the node that imports libp2p or multiaddr.

Importing it checks first that the installed py-libp2p is the version the adapter's patches
were written for (see :mod:`node.net._compat`): they replace or wrap internals of exactly
that release, and another one may have moved them. Set ``COMMONS_ALLOW_LIBP2P_VERSION=1``
to start anyway (to try an upgrade; tests/node/test_libp2p_patches.py then lists the patches
whose upstream code changed). It then installs the import hook of :mod:`node.net._imports`,
so that libp2p's unused subsystems stay out of memory; everything else reaches libp2p
through :mod:`node.net.transport`, in the node's own types.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from node.net import _imports

#: Set to anything but "" or "0" to import the adapter over another py-libp2p release.
ALLOW_VERSION_ENV = "COMMONS_ALLOW_LIBP2P_VERSION"


class Libp2pVersionError(ImportError):
    """The installed py-libp2p is not the release the adapter's patches were written for."""


def check_libp2p_version(
    version_of: Callable[[str], str | None] = _imports.installed_version,
    environ: Mapping[str, str] = os.environ,
) -> None:
    """Raise Libp2pVersionError unless py-libp2p is installed in the pinned version, or the
    operator allowed another with ``COMMONS_ALLOW_LIBP2P_VERSION``."""
    pinned = _imports.WRITTEN_FOR["libp2p"]
    installed = version_of("libp2p")
    if installed == pinned or environ.get(ALLOW_VERSION_ENV, "") not in ("", "0"):
        return
    raise Libp2pVersionError(
        f"Commons patches internals of py-libp2p {pinned} (pinned in pyproject.toml), "
        f"but {installed or 'no version'} is installed: install libp2p=={pinned}, or set "
        f"{ALLOW_VERSION_ENV}=1 to run anyway"
    )


check_libp2p_version()
_imports.install()
