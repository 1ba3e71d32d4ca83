"""The Commons protocol library: records, validation, views and reconciliation.

Pure and synchronous: no I/O, no clock, no global randomness (the one exception is
:meth:`SigningKey.generate`, which needs an unpredictable seed). Clocks are parameters
(``now_ms``), and bytes go in and come out: the caller owns files, sockets and threads.

Everything an embedder needs is importable from here::

    from protocol import SigningKey, ContributionBody, sign_record, parse_record, ProjectView

The names come from the submodules, which stay importable for the rest of their contents:
``protocol.signing`` (keys, strict Ed25519, peer ids), ``protocol.record`` (the six record
kinds), ``protocol.codec`` (canonical MessagePack), ``protocol.validation`` (the rules and their
error codes), ``protocol.ledger`` (the views), ``protocol.negentropy`` (set reconciliation),
``protocol.sync`` (the frames of ``/commons/sync/1``), ``protocol.bundle`` (bundle files),
``protocol.errors``, and ``protocol.testing`` (deterministic keys and record factories for
tests; not exported here, because its keys are public). docs/EMBEDDING.md is the guide and
docs/API.md the reference of the names below.
"""

from protocol.bundle import BundleReader, BundleWriter, encode_bundle, iter_bundle
from protocol.codec import decode, encode
from protocol.errors import (
    BundleError,
    InvalidRecord,
    LocalProtocolError,
    NegentropyError,
    ProtocolError,
    RemoteProtocolError,
)
from protocol.ledger import (
    LedgerEntry,
    ProjectState,
    ProjectSummary,
    ProjectView,
    Share,
    participants,
    profiles,
    project_state,
)
from protocol.negentropy import Negentropy
from protocol.negentropy import Storage as NegentropyStorage
from protocol.record import (
    CONTRIBUTION_TYPES,
    KINDS,
    MAX_RECORD_SIZE,
    Artifact,
    Body,
    ContributionBody,
    EndorsementBody,
    ProfileBody,
    ProjectBody,
    ProjectFields,
    ProjectUpdateBody,
    Record,
    RetractionBody,
    decode_trusted,
    id_hex,
    parse_id_prefix,
    record_id,
    resolve_prefix,
    sign_record,
)
from protocol.signing import (
    SigningKey,
    peer_id,
    public_key_from_peer_id,
    seed_from_pem,
    seed_to_pem,
    verify,
)
from protocol.sync import (
    Ack,
    Bye,
    ErrorFrame,
    Frame,
    FrameReader,
    Hello,
    Neg,
    Push,
    Recs,
    SyncError,
    Want,
    decode_frame,
    encode_frame,
    shared_scopes,
)
from protocol.validation import (
    MAX_CLOCK_SKEW_MS,
    parse_record,
    scope_of,
    topic_of,
    validate_message,
    verify_signature,
)

__version__ = "0.1.0"

__all__ = [
    "CONTRIBUTION_TYPES",
    "KINDS",
    "MAX_CLOCK_SKEW_MS",
    "MAX_RECORD_SIZE",
    "Ack",
    "Artifact",
    "Body",
    "BundleError",
    "BundleReader",
    "BundleWriter",
    "Bye",
    "ContributionBody",
    "EndorsementBody",
    "ErrorFrame",
    "Frame",
    "FrameReader",
    "Hello",
    "InvalidRecord",
    "LedgerEntry",
    "LocalProtocolError",
    "Neg",
    "Negentropy",
    "NegentropyError",
    "NegentropyStorage",
    "ProfileBody",
    "ProjectBody",
    "ProjectFields",
    "ProjectState",
    "ProjectSummary",
    "ProjectUpdateBody",
    "ProjectView",
    "ProtocolError",
    "Push",
    "Record",
    "Recs",
    "RemoteProtocolError",
    "RetractionBody",
    "Share",
    "SigningKey",
    "SyncError",
    "Want",
    "__version__",
    "decode",
    "decode_frame",
    "decode_trusted",
    "encode",
    "encode_bundle",
    "encode_frame",
    "id_hex",
    "iter_bundle",
    "parse_id_prefix",
    "parse_record",
    "participants",
    "peer_id",
    "profiles",
    "project_state",
    "public_key_from_peer_id",
    "record_id",
    "resolve_prefix",
    "scope_of",
    "seed_from_pem",
    "seed_to_pem",
    "shared_scopes",
    "sign_record",
    "topic_of",
    "validate_message",
    "verify",
    "verify_signature",
]
