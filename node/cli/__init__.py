"""The ``commons`` command (docs/INTERFACES.md): one module a topic, wired by :mod:`.main`."""
