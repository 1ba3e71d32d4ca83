// The Commons record format, version 1, in JavaScript (docs/RECORD-FORMAT.md has every rule).
//
// A record is one MessagePack map in canonical form: {v, kind, author, ts, project?, body, sig}.
// Exactly one byte string encodes a record, so a reader decodes, re-encodes canonically and
// compares bytes. The signature is Ed25519 over "commons-record-v1\0" + the canonical map
// without `sig`; the record id is SHA-256 of the whole record bytes (with `sig`).
import { decode } from "@msgpack/msgpack";
import { ed25519 } from "@noble/curves/ed25519.js";
import { sha256 } from "@noble/hashes/sha2.js";

const utf8 = new TextEncoder();
const SIGNING_PREFIX = utf8.encode("commons-record-v1\0");

// The meta topic carries project, project-update and profile records, the device kinds
// (docs/IDENTITY.md), and any record without a `project` key, of a kind known or not.
export const META_TOPIC = "/commons/1/meta";
export const projectTopic = (projectId) => `/commons/1/p/${hex(projectId)}`; // the others
export const topicOf = (r) =>
    ["project", "project-update", "profile"].includes(r.kind) || r.project === undefined
        ? META_TOPIC
        : projectTopic(r.project);

export const hex = (bytes) => Buffer.from(bytes).toString("hex");
export const recordId = (bytes) => sha256(bytes);
export const sameBytes = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

// Decode with @msgpack/msgpack; 64-bit integers (`ts`) come back as BigInt. The result is
// only trusted once it re-encodes to the same bytes: see `encode`.
export const decodeRecord = (bytes) => decode(bytes, { useBigInt64: true });

// Canonical MessagePack. Do not rely on a library's key order: keys are sorted by their
// UTF-8 bytes (not by JavaScript's UTF-16 string order), every length and integer takes its
// shortest form (a non-negative integer always the unsigned forms), byte strings are `bin`
// and text is `str`; float, nil, bool and ext do not exist in a record.
export function encode(value) {
    const out = [];
    write(value, out, 0);
    return Uint8Array.from(out);
}

function write(v, out, depth) {
    if (depth > 8) throw new Error("nested deeper than 8");
    if (typeof v === "bigint" || Number.isInteger(v)) return writeInt(BigInt(v), out);
    if (typeof v === "string") return writeBytes(utf8.encode(v), out, 0xa0, 32, [0xd9, 0xda, 0xdb]);
    if (v instanceof Uint8Array) return writeBytes(v, out, null, 0, [0xc4, 0xc5, 0xc6]);
    if (Array.isArray(v)) {
        head(out, v.length, 0x90, 16, [null, 0xdc, 0xdd]);
        for (const item of v) write(item, out, depth + 1);
        return;
    }
    if (v !== null && typeof v === "object") {
        const entries = Object.entries(v).map(([k, val]) => [utf8.encode(k), k, val]);
        entries.sort((a, b) => compareBytes(a[0], b[0]));
        head(out, entries.length, 0x80, 16, [null, 0xde, 0xdf]);
        for (const [, key, val] of entries) {
            write(key, out, depth + 1);
            write(val, out, depth + 1);
        }
        return;
    }
    throw new Error(`not allowed in a record: ${typeof v} ${v}`);
}

// A length header: the fix form below `fixLimit`, then 8-, 16- or 32-bit lengths.
function head(out, n, fixBase, fixLimit, [op8, op16, op32]) {
    if (fixBase !== null && n < fixLimit) out.push(fixBase | n);
    else if (op8 !== null && n < 0x100) out.push(op8, n);
    else if (n < 0x10000) out.push(op16, ...be(BigInt(n), 2));
    else out.push(op32, ...be(BigInt(n), 4));
}

function writeBytes(bytes, out, fixBase, fixLimit, ops) {
    head(out, bytes.length, fixBase, fixLimit, ops);
    out.push(...bytes);
}

function writeInt(n, out) {
    if (n >= 0n) {
        if (n < 0x80n) return out.push(Number(n)); // positive fixint
        for (const [op, size] of [[0xcc, 1], [0xcd, 2], [0xce, 4], [0xcf, 8]])
            if (n < 1n << BigInt(8 * size)) return out.push(op, ...be(n, size));
    } else {
        if (n >= -32n) return out.push(Number(n + 256n)); // negative fixint
        for (const [op, size] of [[0xd0, 1], [0xd1, 2], [0xd2, 4], [0xd3, 8]])
            if (n >= -(1n << BigInt(8 * size - 1))) return out.push(op, ...be(n, size));
    }
    throw new Error(`integer out of range: ${n}`);
}

function be(n, size) { // big-endian two's complement, `size` bytes
    const u = BigInt.asUintN(8 * size, n);
    return Array.from({ length: size }, (_, i) => Number((u >> BigInt(8 * (size - 1 - i))) & 0xffn));
}

function compareBytes(a, b) {
    for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
    return a.length - b.length;
}

const signingInput = (unsigned) => new Uint8Array([...SIGNING_PREFIX, ...encode(unsigned)]);

// Strict Ed25519, as libsodium verifies (every node must decide alike or the ledger forks):
// noble's zip215:false refuses non-canonical encodings, S >= L and a small-order public key;
// a small-order R is refused here as well.
function strictVerify(sig, message, publicKey) {
    if (!(sig instanceof Uint8Array) || sig.length !== 64) return false;
    if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) return false;
    try {
        if (ed25519.Point.fromBytes(sig.subarray(0, 32)).isSmallOrder()) return false;
    } catch {
        return false;
    }
    return ed25519.verify(sig, message, publicKey, { zip215: false });
}

export function verifySignature(record) {
    const { sig, ...unsigned } = record;
    return strictVerify(sig, signingInput(unsigned), record.author);
}

// Devices (docs/IDENTITY.md, RECORD-FORMAT.md 4.7-4.9). A link code's 10 bytes give the
// one-time ticket key: its seed is SHA-256("commons-link-ticket-v1\0" + code). A device-join
// carries the ticket key's signature of "commons-device-join-v1\0" + person + author, checked
// as strictly as the record's own signature.
const TICKET_PREFIX = utf8.encode("commons-link-ticket-v1\0");
const JOIN_PREFIX = utf8.encode("commons-device-join-v1\0");
export const ticketSecret = (code) => sha256(new Uint8Array([...TICKET_PREFIX, ...code]));
const joinInput = (person, device) => new Uint8Array([...JOIN_PREFIX, ...person, ...device]);
export const joinProof = (ticketSecretKey, person, device) =>
    ed25519.sign(joinInput(person, device), ticketSecretKey);
export function verifyJoinProof(record) {
    const { person, ticket, proof } = record.body ?? {};
    if (record.kind !== "device-join" || !(person instanceof Uint8Array)) return false;
    return strictVerify(proof, joinInput(person, record.author), ticket);
}

// Sign {kind, project?, body} with a 32-byte Ed25519 secret key: the record's bytes and id.
export function signRecord(secretKey, { kind, project, body }, ts = Date.now()) {
    const unsigned = { v: 1, kind, author: ed25519.getPublicKey(secretKey), ts, body };
    if (project !== undefined) unsigned.project = project; // absent, never nil, for meta kinds
    const sig = ed25519.sign(signingInput(unsigned), secretKey);
    const bytes = encode({ ...unsigned, sig });
    return { bytes, id: recordId(bytes), record: { ...unsigned, sig } };
}
