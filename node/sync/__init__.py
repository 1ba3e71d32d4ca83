"""Records coming in: ingest (validate, then store in batches), the signature helper process,
and the pump that runs ``/commons/sync/1`` sessions (:mod:`protocol.sync_session`) on streams."""
