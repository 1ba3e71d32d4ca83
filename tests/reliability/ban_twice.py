"""A node bans one peer twice at once; it must keep running (run as its own process).

    python tests/reliability/ban_twice.py DIR

Exit 0 when the node survived and still gossips; 1, with the error on the last line of
stderr, when it did not. ``test_flood.py`` runs it in a separate process because a node that
dies this way leaves sockets behind that would trouble later tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

from reliability_harness import addr, open_attacker, running, wait_until  # noqa: E402

from node.net.transport import TransportError  # noqa: E402
from protocol.validation import META_TOPIC  # noqa: E402


async def ban_twice(root: Path) -> None:
    with trio.fail_after(60):
        async with running(root, "b") as b, running(root, "c", bootstrap=[addr(b)]) as c:
            await wait_until(lambda: c.peer_id in b.transport.mesh_peers(META_TOPIC), 20)
            for i in range(5):
                async with open_attacker(f"banned-{i}", lying_server=False) as evil:
                    await evil.transport.subscribe(META_TOPIC)
                    await evil.transport.connect(addr(b))
                    await wait_until(lambda: len(b.transport.connected_peers()) == 2)
                    await trio.sleep(0.05)
                    b.transport.ban(evil.peer_id, 300)
                    b.transport.ban(evil.peer_id, 300)
                    await trio.sleep(0.1)
            project = await b.author("project", {"name": "Still standing"})
            await wait_until(lambda: c.store.has(project.id), 20)


def main() -> int:
    try:
        trio.run(ban_twice, Path(sys.argv[1]))
    except TransportError as exc:
        sys.stderr.write(f"\nTransportError: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
