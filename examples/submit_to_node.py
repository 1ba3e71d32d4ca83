"""Sign records here and hand them to a running Commons node, which stores and gossips them.

Run: python examples/submit_to_node.py [--home DIR] [--api URL --token-file FILE] [--key PEM]

The node's local HTTP API takes one canonical signed record per ``POST /api/v1/records``
(``application/octet-stream``, ``Authorization: Bearer`` the node's API token) and answers
201 ``{"id"}`` once the record is committed, 200 when it already held it, 422 ``{"error"}``
when the record is refused. ``--home`` finds the API address in the home's ``node.json`` and
the token in its ``api.token``; ``--api`` and ``--token-file`` name them directly. Records are
signed by the key in ``--key`` (a PKCS#8 PEM file), else by a freshly generated one: the
author is whoever signs, not the node. Needs only the protocol library and the standard one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from protocol import (
    ContributionBody,
    ProjectBody,
    Record,
    SigningKey,
    seed_from_pem,
    sign_record,
)

TIMEOUT = 30.0


class NodeApi:
    """The two calls this example needs from the node's API."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token

    def submit(self, record: Record) -> tuple[int, dict[str, Any]]:
        """POST the record's canonical bytes; the HTTP status and the JSON answer."""
        request = urllib.request.Request(
            self.base_url + "/api/v1/records",
            data=record.raw,
            method="POST",
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/octet-stream",
            },
        )
        return self._send(request)

    def get(self, path: str) -> tuple[int, Any]:
        return self._send(urllib.request.Request(self.base_url + path))

    def _send(self, request: urllib.request.Request) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:  # 4xx and 5xx carry a JSON {"error"} body
            with exc:
                return exc.code, json.load(exc)


def locate(args: argparse.Namespace) -> NodeApi:
    """The node's API address and token, from the home or from the options."""
    if args.api is not None:
        if args.token_file is None:
            raise SystemExit("error: --api needs --token-file")
        return NodeApi(args.api, Path(args.token_file).read_text().strip())
    home = Path(args.home or os.environ.get("COMMONS_HOME") or "~/.local/share/commons")
    home = home.expanduser()
    try:
        info = json.loads((home / "node.json").read_text())
    except FileNotFoundError:
        raise SystemExit(f"error: no node is running for {home} (no node.json)") from None
    return NodeApi(info["api"], (home / "api.token").read_text().strip())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--home", help="the node's home (default: $COMMONS_HOME)")
    parser.add_argument("--api", help="the node's API address, e.g. http://127.0.0.1:4711")
    parser.add_argument("--token-file", help="a file holding the API token (with --api)")
    parser.add_argument("--key", help="sign with this PEM key file instead of a new key")
    args = parser.parse_args(argv[1:])
    node = locate(args)
    key = SigningKey(seed_from_pem(Path(args.key).read_bytes())) if args.key else None
    key = key or SigningKey.generate()
    now_ms = time.time_ns() // 1_000_000
    print(f"signing as {key.peer_id}")

    project = sign_record(key, body=ProjectBody(name="Submitted from outside"), ts=now_ms)
    contribution = sign_record(
        key,
        body=ContributionBody(type="code", title="A signed change", effort_minutes=45),
        ts=now_ms + 1,
        project=project.id,
    )
    try:
        for record in (project, contribution):
            status, answer = node.submit(record)
            if status not in (200, 201):
                raise SystemExit(f"error: the node refused the {record.kind}: {answer['error']}")
            print(f"submitted {record.kind} {answer['id']} ({status})")

        # Submitting again is harmless: records are identified by their bytes.
        status, answer = node.submit(contribution)
        print(f"submitted it again: {status}, already held")

        # A record the node cannot verify is refused, with the reason, and not stored.
        forged = Record(
            author=contribution.author,
            ts=contribution.ts,
            project=contribution.project,
            body=ContributionBody(type="code", title="A forged change", effort_minutes=9999),
            sig=contribution.sig,
        )
        status, answer = node.submit(forged)
        print(f"a forged record: {status}, {answer['error']}")

        # The node's views now count the contribution; JSON names people by peer id.
        status, ledger = node.get(f"/api/v1/projects/{project.id.hex()}/ledger")
    except OSError as exc:  # connection refused, timed out, reset
        raise SystemExit(f"error: cannot reach the node at {node.base_url}: {exc}") from None
    if status != 200:
        raise SystemExit(f"error: the node has no ledger for the project: {ledger['error']}")
    for entry in ledger:
        print(f"ledger: {entry['id'][:16]} {entry['title']!r} by {entry['author']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
