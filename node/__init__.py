"""The Commons node: store, network, reconciliation, CLI and local API."""

from node import _libp2p_imports

# Before any module of the node imports libp2p: keep its unused subsystems out of memory.
_libp2p_imports.install()
