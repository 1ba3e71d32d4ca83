"""The ledger views (:mod:`protocol.ledger` folds) served from the store's tallies or folds,
cached in memory and kept warm in a running node."""
