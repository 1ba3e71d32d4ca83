"""The libp2p adapter: the only package of the node that imports libp2p or multiaddr.

Importing it installs the import hook of :mod:`node.net._imports` first, so that libp2p's
unused subsystems stay out of memory; everything else reaches libp2p through
:mod:`node.net.transport`, in the node's own types.
"""

from node.net import _imports

_imports.install()
