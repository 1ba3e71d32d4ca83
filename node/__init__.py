"""The Commons node: store, network, reconciliation, CLI and local API.

Importing ``node`` has no side effects. The sub-packages are its layers, each importing only
those before it (tests/node/test_layers.py checks it):

- ``node.store`` — the SQLite store of records, peers and the views' tallies;
- ``node.net`` — the libp2p adapter, the only code that imports libp2p;
- ``node.sync`` — ingest (validation and storage of incoming records), the signature helper,
  and the pump that runs reconciliation sessions on streams;
- ``node.views`` — the ledger views, folded from the store and cached;
- top level: ``home`` (identity, config, ``node.json``), ``metrics``, ``tokens``,
  ``authoring``, ``service`` (the pure decisions), ``liveness`` and ``runtime`` (the reactor);
- ``node.api`` — the local HTTP API, and ``node.cli`` — the ``commons`` command, the two
  front ends, which nothing else imports.
"""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    # The version is read from the installed distribution when first asked for: reading
    # package metadata costs a tenth of every ``commons`` command's start otherwise.
    if name != "__version__":
        raise AttributeError(f"module 'node' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("commons-ledger")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree never installed
        found = "0+unknown"
    globals()["__version__"] = found
    return found
