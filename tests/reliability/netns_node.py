"""A ``commons node run`` process inside one network namespace of a lab (a
:class:`NetnsLab`, its namespaces numbered, or the NAT test's ``NatLab``, its namespaces
named), reached through its loopback API from a thread inside that namespace."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
from netns_lab import NetnsLab
from procs import store_ids
from system_harness import COMMONS, run_cli, wait_until

__all__ = ["PORT", "NsNode"]

PORT = 4710


class NsNode:
    """A ``commons node run`` process inside one namespace of the lab."""

    def __init__(self, lab: NetnsLab | Any, i: int | str, root: Path) -> None:
        self.lab = lab
        #: The lab's key of this node's namespace: a number in a NetnsLab, a name in a NatLab.
        self.i = i
        self.name = f"n{i}" if isinstance(i, int) else i
        self.home = root / self.name
        self.log_path = root / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        run_cli(self.home, "init")
        self.token = (self.home / "api.token").read_text().strip()

    @property
    def addr(self) -> str:
        return f"/ip4/{self.lab.ip(self.i)}/tcp/{PORT}/p2p/{self.info['peer_id']}"

    def start(self, bootstrap: list[NsNode], *args: str, wait: bool = True) -> None:
        """Launch ``commons node run ARGS`` bootstrapped to ``bootstrap``; ``wait``: until its
        API answers (else call :meth:`wait_ready`)."""
        argv = [*self.lab.exec_prefix(self.i), str(COMMONS), "--home", str(self.home)]
        argv += ["node", "run", "--listen", f"/ip4/{self.lab.ip(self.i)}/tcp/{PORT}"]
        argv += ["--api", "127.0.0.1:0", "--no-mdns", *args]
        for peer in bootstrap:
            argv += ["--bootstrap", peer.addr]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 30) -> None:
        wait_until(self._ready, timeout=timeout, what=f"node {self.name} to start")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited: {self.log_path.read_text()[-3000:]}")
        try:
            info = json.loads((self.home / "node.json").read_text())
        except (FileNotFoundError, ValueError):
            return False
        if info.get("pid") != self.proc.pid:
            return False
        self.info = info
        return self.get("/api/v1/status").get("running") is True

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.info["api"], timeout=10) as http:
            response = http.request(method, path, json=body, headers=headers)
        assert response.status_code in (200, 201), (self.name, path, response.text)
        return response.json()

    def metrics(self) -> str:
        with httpx.Client(base_url=self.info["api"], timeout=10) as http:
            return http.get("/metrics").text

    def get(self, path: str) -> Any:
        return self.lab.call(self.i, self._request, "GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self.lab.call(self.i, self._request, "POST", path, body)

    def ids(self) -> set[bytes]:
        return store_ids(self.home)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
