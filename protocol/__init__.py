"""The Commons protocol library: records, validation, views and reconciliation.

Pure and synchronous: no I/O, no clock, no global randomness. Import what you need from the
submodules (``protocol.record``, ``protocol.validation``, ``protocol.ledger``,
``protocol.negentropy``, ``protocol.bundle``, ``protocol.testing``).
"""

__version__ = "0.1.0"
