"""The Commons node: store, network, reconciliation, CLI and local API."""
