"""The Commons protocol library: records, validation, views and reconciliation.

Pure and synchronous: no I/O, no clock, no global randomness (the one exception is
:meth:`SigningKey.generate`, which needs an unpredictable seed). Clocks are parameters
(``now_ms``), and bytes go in and come out: the caller owns files, sockets and threads.

Everything an embedder needs is importable from here::

    from protocol import SigningKey, ContributionBody, sign_record, parse_record, ProjectView

The names come from the submodules, which stay importable for the rest of their contents:
``protocol.signing`` (keys, strict Ed25519, peer ids), ``protocol.record`` (the record kinds;
``protocol.identity_records`` holds the device kinds), ``protocol.identity`` (persons),
``protocol.codec`` (canonical MessagePack), ``protocol.validation`` (the rules and their
error codes), ``protocol.ledger`` (the views), ``protocol.negentropy`` (set reconciliation),
``protocol.sync`` (the frames of ``/commons/sync/1``), ``protocol.bundle`` (bundle files),
``protocol.errors``, and ``protocol.testing`` (deterministic keys and record factories for
tests; not exported here, because its keys are public). docs/EMBEDDING.md is the guide and
docs/API.md the reference of the names below.
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the same names, for type checkers; at run time they load on first use
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
    from protocol.identity import People
    from protocol.identity_records import (
        DeviceJoinBody,
        DeviceLinkBody,
        DeviceRevokeBody,
        UnknownBody,
    )
    from protocol.ledger import (
        LedgerEntry,
        ProjectState,
        ProjectSummary,
        ProjectView,
        Share,
        participants,
        person_profiles,
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
    "DeviceJoinBody",
    "DeviceLinkBody",
    "DeviceRevokeBody",
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
    "People",
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
    "UnknownBody",
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
    "person_profiles",
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

#: Where each exported name is defined: (module, name there). Importing ``protocol`` loads no
#: submodule; each loads when one of its names is first used, so ``import protocol.negentropy``
#: stays free of third-party packages (scripts/negentropy-harness runs on the standard library
#: alone) and a program that only reconciles never loads the codec or the crypto libraries.
_SOURCES: dict[str, tuple[str, str]] = {
    "BundleReader": ("protocol.bundle", "BundleReader"),
    "BundleWriter": ("protocol.bundle", "BundleWriter"),
    "encode_bundle": ("protocol.bundle", "encode_bundle"),
    "iter_bundle": ("protocol.bundle", "iter_bundle"),
    "decode": ("protocol.codec", "decode"),
    "encode": ("protocol.codec", "encode"),
    "BundleError": ("protocol.errors", "BundleError"),
    "InvalidRecord": ("protocol.errors", "InvalidRecord"),
    "LocalProtocolError": ("protocol.errors", "LocalProtocolError"),
    "NegentropyError": ("protocol.errors", "NegentropyError"),
    "ProtocolError": ("protocol.errors", "ProtocolError"),
    "RemoteProtocolError": ("protocol.errors", "RemoteProtocolError"),
    "LedgerEntry": ("protocol.ledger", "LedgerEntry"),
    "ProjectState": ("protocol.ledger", "ProjectState"),
    "ProjectSummary": ("protocol.ledger", "ProjectSummary"),
    "ProjectView": ("protocol.ledger", "ProjectView"),
    "Share": ("protocol.ledger", "Share"),
    "participants": ("protocol.ledger", "participants"),
    "person_profiles": ("protocol.ledger", "person_profiles"),
    "People": ("protocol.identity", "People"),
    "DeviceJoinBody": ("protocol.identity_records", "DeviceJoinBody"),
    "DeviceLinkBody": ("protocol.identity_records", "DeviceLinkBody"),
    "DeviceRevokeBody": ("protocol.identity_records", "DeviceRevokeBody"),
    "UnknownBody": ("protocol.identity_records", "UnknownBody"),
    "profiles": ("protocol.ledger", "profiles"),
    "project_state": ("protocol.ledger", "project_state"),
    "Negentropy": ("protocol.negentropy", "Negentropy"),
    "NegentropyStorage": ("protocol.negentropy", "Storage"),
    "Artifact": ("protocol.record", "Artifact"),
    "Body": ("protocol.record", "Body"),
    "CONTRIBUTION_TYPES": ("protocol.record", "CONTRIBUTION_TYPES"),
    "ContributionBody": ("protocol.record", "ContributionBody"),
    "EndorsementBody": ("protocol.record", "EndorsementBody"),
    "KINDS": ("protocol.record", "KINDS"),
    "MAX_RECORD_SIZE": ("protocol.record", "MAX_RECORD_SIZE"),
    "ProfileBody": ("protocol.record", "ProfileBody"),
    "ProjectBody": ("protocol.record", "ProjectBody"),
    "ProjectFields": ("protocol.record", "ProjectFields"),
    "ProjectUpdateBody": ("protocol.record", "ProjectUpdateBody"),
    "Record": ("protocol.record", "Record"),
    "RetractionBody": ("protocol.record", "RetractionBody"),
    "decode_trusted": ("protocol.record", "decode_trusted"),
    "id_hex": ("protocol.record", "id_hex"),
    "parse_id_prefix": ("protocol.record", "parse_id_prefix"),
    "record_id": ("protocol.record", "record_id"),
    "resolve_prefix": ("protocol.record", "resolve_prefix"),
    "sign_record": ("protocol.record", "sign_record"),
    "SigningKey": ("protocol.signing", "SigningKey"),
    "peer_id": ("protocol.signing", "peer_id"),
    "public_key_from_peer_id": ("protocol.signing", "public_key_from_peer_id"),
    "seed_from_pem": ("protocol.signing", "seed_from_pem"),
    "seed_to_pem": ("protocol.signing", "seed_to_pem"),
    "verify": ("protocol.signing", "verify"),
    "Ack": ("protocol.sync", "Ack"),
    "Bye": ("protocol.sync", "Bye"),
    "ErrorFrame": ("protocol.sync", "ErrorFrame"),
    "Frame": ("protocol.sync", "Frame"),
    "FrameReader": ("protocol.sync", "FrameReader"),
    "Hello": ("protocol.sync", "Hello"),
    "Neg": ("protocol.sync", "Neg"),
    "Push": ("protocol.sync", "Push"),
    "Recs": ("protocol.sync", "Recs"),
    "SyncError": ("protocol.sync", "SyncError"),
    "Want": ("protocol.sync", "Want"),
    "decode_frame": ("protocol.sync", "decode_frame"),
    "encode_frame": ("protocol.sync", "encode_frame"),
    "shared_scopes": ("protocol.sync", "shared_scopes"),
    "MAX_CLOCK_SKEW_MS": ("protocol.validation", "MAX_CLOCK_SKEW_MS"),
    "parse_record": ("protocol.validation", "parse_record"),
    "scope_of": ("protocol.validation", "scope_of"),
    "topic_of": ("protocol.validation", "topic_of"),
    "validate_message": ("protocol.validation", "validate_message"),
    "verify_signature": ("protocol.validation", "verify_signature"),
}


def __getattr__(name: str) -> object:
    """Load an exported name from its submodule on first use (PEP 562), then keep it here."""
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module 'protocol' has no attribute {name!r}")
    value = getattr(importlib.import_module(source[0]), source[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
