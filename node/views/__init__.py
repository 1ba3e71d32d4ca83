"""The ledger views (:mod:`protocol.ledger` folds) served from the store, cached in memory and
persisted as snapshots."""
