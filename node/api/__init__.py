"""The local HTTP API (docs/INTERFACES.md), served by a running node."""
