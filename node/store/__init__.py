"""The node's SQLite store: records and their indexes, the peer book."""
