// A stock js-libp2p peer checks a running Commons node from outside (run by scripts/js-interop).
//
// Usage: node peer.mjs COMMONS HOME SECONDS
//   COMMONS: the `commons` command; HOME: the home of the running node (its node.json says
//   where it listens); SECONDS: how long to stay connected. Prints PASS/FAIL lines; exit 1 on
//   any FAIL.
//
// The peer runs TCP, Noise, Yamux, GossipSub and identify: no ping service, no sync protocol,
// which is what a stock js-libp2p or rust-libp2p node offers. Records are the format's bytes
// (record.mjs); a gossip message's data is exactly one record, and its message id is the id.
import "./shim.mjs";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { promisify } from "node:util";
import { gossipsub } from "@chainsafe/libp2p-gossipsub";
import { noise } from "@chainsafe/libp2p-noise";
import { yamux } from "@chainsafe/libp2p-yamux";
import { identify } from "@libp2p/identify";
import { tcp } from "@libp2p/tcp";
import { multiaddr } from "@multiformats/multiaddr";
import { ed25519 } from "@noble/curves/ed25519.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { createLibp2p } from "libp2p";
import {
    META_TOPIC, decodeRecord, encode, hex, joinProof, projectTopic, recordId, sameBytes,
    signRecord, ticketSecret, topicOf, verifyJoinProof, verifySignature,
} from "./record.mjs";

const [commons, home, seconds] = process.argv.slice(2);
const node = JSON.parse(readFileSync(`${home}/node.json`, "utf8")); // {peer_id, addrs, api}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
let failures = 0;
function check(what, ok, detail = "") {
    console.log(`${ok ? "PASS" : "FAIL"}  ${what}${!ok && detail ? ` (${detail})` : ""}`);
    if (!ok) failures += 1;
}
async function waitFor(what, probe, ms = 20_000) {
    for (const end = Date.now() + ms; Date.now() < end; await sleep(100)) {
        const found = await probe();
        if (found) return found;
    }
    throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`);
}
// Authoring through the node's own CLI, as a user would; the node gossips what it authors.
const cli = async (...args) =>
    JSON.parse((await promisify(execFile)(commons, ["--home", home, ...args, "--json"])).stdout);
const api = (path) => fetch(node.api + path);
const stored = async (id) => (await api(`/api/v1/records/${hex(id)}`)).status;

// ---------------------------------------------------------------------------- the libp2p peer
const libp2p = await createLibp2p({
    addresses: { listen: ["/ip4/127.0.0.1/tcp/0"] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
        identify: identify(),
        pubsub: gossipsub({
            globalSignaturePolicy: "StrictSign", // py-libp2p signs its messages and wants ours signed
            msgIdFn: (msg) => sha256(msg.data), // a message's id is the id of the record it carries
        }),
    },
});
const pubsub = libp2p.services.pubsub;
const received = []; // every gossip message: {topic, data}
pubsub.addEventListener("message", (e) => received.push({ topic: e.detail.topic, data: e.detail.data }));
let closed = 0;
libp2p.addEventListener("connection:close", (e) => (closed += e.detail.remotePeer.toString() === node.peer_id));

pubsub.subscribe(META_TOPIC);
const connection = await libp2p.dial(multiaddr(node.addrs[0]));
const connectedAt = Date.now();
const inMesh = (topic) => () => pubsub.getMeshPeers(topic).includes(node.peer_id);

// A record the node authored (`cliRecord`: the CLI's output) arrives by gossip: the message
// whose data hashes to the id the CLI printed. Its bytes must be canonical and signed.
async function receive(label, cliRecord, topic) {
    const message = await waitFor(`the ${label} by gossip`, () =>
        received.find((m) => m.topic === topic && hex(recordId(m.data)) === cliRecord.id));
    const record = decodeRecord(message.data);
    if (record.kind === "device-join")
        check(`${label}: its proof is the link ticket's strict signature`, verifyJoinProof(record));
    check(`${label}: arrived on ${topic}, SHA-256 of its bytes = the id the CLI printed`, true);
    check(`${label}: canonical (re-encoded in JavaScript, same bytes)`, sameBytes(encode(record), message.data));
    check(`${label}: strict Ed25519 signature by its author`, verifySignature(record));
    check(`${label}: the topic of its kind`, topicOf(record) === topic && record.kind === cliRecord.kind);
}

async function rejectedSoFar() { // the node's count of gossip it refused, any reason
    const text = await (await api("/metrics")).text();
    return text.split("\n").filter((l) => l.startsWith("commons_gossip_rejected_total"))
        .reduce((sum, l) => sum + Number(l.split(" ").pop()), 0);
}

try {
    await waitFor("the node in our mesh on the meta topic", inMesh(META_TOPIC));
    check("connected over TCP + Noise + Yamux; GossipSub mesh formed", true);

    // 1. Records authored through the CLI reach us, and check out.
    const project = await cli("project", "create", "Checked from JavaScript", "--license", "MIT");
    await receive("project", project, META_TOPIC);
    const pid = Uint8Array.from(Buffer.from(project.id, "hex")); // a project's id: its genesis record's
    const topic = projectTopic(pid);
    pubsub.subscribe(topic);
    await waitFor("the node in our mesh on the project topic", inMesh(topic));
    const first = await cli("contribute", project.id, "--type", "code", "--title", "Parser", "--minutes", "90");
    await receive("contribution", first, topic);

    // 2. A record authored here, with a key made here, is stored by the node.
    const key = ed25519.utils.randomSecretKey();
    const body = { type: "testing", title: "Read and re-encoded in JavaScript", effort_minutes: 20 };
    const ours = signRecord(key, { kind: "contribution", project: pid, body });
    await pubsub.publish(topic, ours.bytes);
    await waitFor("the node to store our record", async () => (await stored(ours.id)) === 200);
    const shown = await (await api(`/api/v1/records/${hex(ours.id)}`)).json();
    check("our contribution: stored by the node, as sent", shown.kind === "contribution" && shown.body.title === body.title);

    // 2b. Devices. The node makes its person and links a device: the link and the node's own
    // join (whose proof we check) arrive by gossip. Then a person made here: a recovery key
    // links a ticket and our key joins with the ticket's proof; the node counts our key as a
    // device of that person. A kind the node does not know is kept, not refused.
    const kit = await cli("identity", "recovery-kit");
    const joinedHere = await waitFor("the node's own device-join", async () => {
        const r = await (await api(`/api/v1/records/${kit.join}`)).json();
        return r.kind === "device-join" ? r : null;
    });
    await receive("device-join of the node", joinedHere, META_TOPIC);
    const linked = await cli("identity", "link");
    await receive("device-link", linked, META_TOPIC);
    const recovery = ed25519.utils.randomSecretKey();
    const person = ed25519.getPublicKey(recovery);
    const ticket = ticketSecret(Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
    const link = signRecord(recovery, { kind: "device-link", body: { person, ticket: ed25519.getPublicKey(ticket) } });
    const proof = joinProof(ticket, person, ed25519.getPublicKey(key));
    const join = signRecord(key, { kind: "device-join", body: { person, ticket: ed25519.getPublicKey(ticket), proof } });
    check("our device-join: its proof verifies here", verifyJoinProof(join.record));
    const unknown = signRecord(key, { kind: "vote", body: { score: 5 } });
    for (const r of [link, join, unknown]) await pubsub.publish(META_TOPIC, r.bytes);
    await waitFor("the node to store our device records", async () =>
        (await stored(link.id)) === 200 && (await stored(join.id)) === 200 && (await stored(unknown.id)) === 200);
    const joinShown = await (await api(`/api/v1/records/${hex(join.id)}`)).json();
    const ourPerson = await (await api(`/api/v1/people/${joinShown.author}`)).json();
    check("our key: a device of the person made here, on the node",
        ourPerson.person === joinShown.body.person && ourPerson.devices.some((d) => d.device === joinShown.author && d.active));
    check("a kind the node does not know: stored and forwarded, not refused", (await stored(unknown.id)) === 200);

    // 3. Forgeries: each is refused by the node's validator, none is stored.
    const rejectedBefore = await rejectedSoFar();
    const badSig = signRecord(key, { kind: "contribution", project: pid, body: { ...body, title: "Bad signature" } });
    const sig = badSig.record.sig.slice();
    sig[40] ^= 1;
    const changed = signRecord(key, { kind: "contribution", project: pid, body: { ...body, title: "As signed" } });
    const forgeries = {
        "bad signature": encode({ ...badSig.record, sig }),
        "body changed after signing": encode({ ...changed.record, body: { ...body, title: "Changed after" } }),
        "not a kind name": signRecord(key, { kind: "Poem!", project: pid, body: { title: "Ode" } }).bytes,
    };
    for (const bytes of Object.values(forgeries)) await pubsub.publish(topic, bytes);
    // A valid record sent after them: once it is stored, the forgeries have been judged.
    const marker = signRecord(key, { kind: "contribution", project: pid, body: { ...body, title: "After the forgeries" } });
    await pubsub.publish(topic, marker.bytes);
    await waitFor("the record sent after the forgeries", async () => (await stored(marker.id)) === 200);
    await waitFor("the node to count 3 refusals", async () => (await rejectedSoFar()) >= rejectedBefore + 3, 5000);
    for (const [what, bytes] of Object.entries(forgeries))
        check(`forgery refused, not stored: ${what}`, (await stored(recordId(bytes))) === 404);

    // 4. Stay connected; a record authored 30 s in still reaches us.
    const peerListed = async () =>
        (await (await api("/api/v1/peers")).json()).some((p) => p.peer_id === libp2p.peerId.toString());
    let unlisted = 0;
    let late = null;
    while (late === null || Date.now() - connectedAt < Number(seconds) * 1000) {
        unlisted += !(await peerListed());
        if (late === null && Date.now() - connectedAt >= 30_000) {
            late = await cli("contribute", project.id, "--type", "docs", "--title", "30 s in", "--minutes", "5");
            await receive("contribution authored 30 s in", late, topic);
        }
        await sleep(5000);
    }
    const secs = Math.round((Date.now() - connectedAt) / 1000);
    check(`the node listed us in /api/v1/peers all along (${secs} s, every 5 s)`, unlisted === 0, `${unlisted} times not`);
    check("our one connection to the node stayed open", connection.status === "open" && closed === 0);
} catch (error) {
    check("the run completed", false, error.message);
}
await libp2p.stop();
process.exit(failures ? 1 : 0);
