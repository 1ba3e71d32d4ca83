"""Helpers for the system tests: real ``commons node run`` processes on loopback.

Every node is a separate process started from the installed ``commons`` command, driven only
through the CLI (subprocess) and the local HTTP API. Ports are always 0: ``node.json`` says
which were picked. Every wait is a poll with a deadline (:func:`wait_until`). The ``nodes``
fixture (conftest.py) stops every process it started (by pid, even when the test failed) and
appends the nodes' logs and the CLI calls made to the report of a failed test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]

#: Seconds a node gets to write node.json and answer /api/v1/status.
STARTUP_TIMEOUT = 30.0
#: Seconds a CLI call may take before it counts as hung.
CLI_TIMEOUT = 60.0
#: Seconds for records to spread between nodes that are connected (generous: 2 loaded cores).
SPREAD_TIMEOUT = 40.0
#: The most log text attached to a failure report, per node.
MAX_LOG_REPORT = 30_000

T = TypeVar("T")


def _find_commons() -> str | None:
    candidate = REPO / ".venv" / "bin" / "commons"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("commons")


COMMONS = _find_commons()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "COMMONS_HOME"}
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("LC_ALL", "C.UTF-8")
    return env


# ------------------------------------------------------------------------------------------
# Waiting


class Fatal(AssertionError):
    """Raised by a predicate when waiting longer cannot help (a node process died)."""


def wait_until(
    predicate: Callable[[], T],
    timeout: float = SPREAD_TIMEOUT,
    interval: float = 0.1,
    what: str = "a condition",
) -> T:
    """Call ``predicate`` until it returns something truthy; return that. Fail at the deadline.

    Exceptions raised by ``predicate`` count as "not yet" (a node still starting, a record not
    yet held) and the last one is named in the failure, except :class:`Fatal` ones, which end
    the wait at once.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    last_exc: BaseException | None = None
    while True:
        try:
            last = predicate()
        except Fatal:
            raise
        except Exception as exc:
            last_exc = exc
        else:
            last_exc = None
            if last:
                return last
        if time.monotonic() >= deadline:
            detail = f"; last error: {last_exc!r}" if last_exc else f"; last value: {last!r}"
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


# ------------------------------------------------------------------------------------------
# The CLI


@dataclass
class CliResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    elapsed: float

    @property
    def value(self) -> Any:
        return json.loads(self.stdout)

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\n-> exit {self.returncode} in {self.elapsed:.2f} s\n"
            f"stdout: {self.stdout[:2000]!r}\nstderr: {self.stderr[:2000]!r}"
        )


class CliLog:
    """The CLI calls of one test, for the failure report."""

    def __init__(self) -> None:
        self.calls: list[CliResult] = []

    def text(self) -> str:
        return "\n\n".join(c.describe() for c in self.calls[-60:])


def run_cli(
    home: Path | None,
    *args: str,
    json: bool = True,
    expect: int | None = 0,
    timeout: float = CLI_TIMEOUT,
    log: CliLog | None = None,
) -> CliResult:
    """Run ``commons [--home HOME] ARGS [--json]``; check the exit code and that no traceback
    was printed; for a failure, check that stderr holds exactly one ``error:`` line."""
    if COMMONS is None:
        pytest.fail("the `commons` command is not installed (.venv/bin/commons, or on PATH)")
    argv = [COMMONS]
    if home is not None:
        argv += ["--home", str(home)]
    argv += list(args)
    if json:
        argv.append("--json")
    start = time.monotonic()
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    result = CliResult(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)
    if log is not None:
        log.calls.append(result)
    assert "Traceback" not in result.stderr, result.describe()
    if expect is not None:
        assert result.returncode == expect, result.describe()
    if result.returncode != 0:
        assert len(result.error_lines) == 1, result.describe()
    return result


# ------------------------------------------------------------------------------------------
# Nodes


class NodeDied(Fatal):
    pass


class NodeProcess:
    """One home, and the ``commons node run`` process for it when started."""

    def __init__(self, name: str, root: Path, cli_log: CliLog) -> None:
        self.name = name
        self.home = root / name
        self.log_path = root / f"{name}.log"
        self.cli_log = cli_log
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] | None = None
        self.http: httpx.Client | None = None
        self.starts = 0
        #: The process may end with a non-zero code (SIGKILLed, or died while starting).
        self.unclean_ok = False
        self._peer_id: str | None = None

    def __repr__(self) -> str:
        return f"<NodeProcess {self.name} {'running' if self.running else 'stopped'}>"

    # ---- the home

    def init(self, display_name: str | None = None) -> dict[str, Any]:
        args = ["init"] + (["--name", display_name] if display_name else [])
        value: dict[str, Any] = self.cli(*args)
        self._peer_id = value["peer_id"]
        return value

    @property
    def peer_id(self) -> str:
        if self._peer_id is None:
            self._peer_id = self.cli("id")["peer_id"]
        return self._peer_id

    @property
    def token(self) -> str:
        return (self.home / "api.token").read_text().strip()

    def run(self, *args: str, json: bool = True, expect: int | None = 0, **kw: Any) -> CliResult:
        """Run the CLI for this home; the whole result."""
        return run_cli(self.home, *args, json=json, expect=expect, log=self.cli_log, **kw)

    def cli(self, *args: str, json: bool = True, expect: int | None = 0, **kw: Any) -> Any:
        """Run the CLI for this home: the parsed JSON output (``json=False``: stdout text)."""
        result = self.run(*args, json=json, expect=expect, **kw)
        return result.value if json else result.stdout

    # ---- the process

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    @property
    def addr(self) -> str:
        assert self.info is not None, f"{self.name} is not running"
        return str(self.info["addrs"][0])

    @property
    def api(self) -> str:
        assert self.info is not None, f"{self.name} is not running"
        return str(self.info["api"])

    def start(
        self,
        *bootstrap: NodeProcess | str,
        extra: tuple[str, ...] = (),
        timeout: float = STARTUP_TIMEOUT,
    ) -> NodeProcess:
        assert not self.running, f"{self.name} is already running"
        if not (self.home / "identity.key").exists():
            self.init()
        argv = [
            str(COMMONS),
            "--home",
            str(self.home),
            "node",
            "run",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "127.0.0.1:0",
            "--no-mdns",
        ]
        for peer in bootstrap:
            argv += ["--bootstrap", peer.addr if isinstance(peer, NodeProcess) else peer]
        argv += list(extra)
        self.starts += 1
        self.info = None
        with self.log_path.open("ab") as log:
            log.write(f"=== start #{self.starts}: {' '.join(argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=_env()
            )
        wait_until(self._ready, timeout=timeout, what=f"node {self.name} to start")
        assert self.info is not None
        self.http = httpx.Client(base_url=self.info["api"], timeout=30.0)
        self._peer_id = self.info["peer_id"]
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        code = self.proc.poll()
        if code is not None:
            self.unclean_ok = True  # the test fails here, with the log
            raise NodeDied(f"node {self.name} exited with {code} while starting:\n{self.log()}")
        try:
            info = json.loads((self.home / "node.json").read_text())
        except (FileNotFoundError, ValueError):
            return False
        if info.get("pid") != self.proc.pid:
            return False  # a stale file from an earlier run
        response = httpx.get(info["api"] + "/api/v1/status", timeout=5.0)
        if response.status_code != 200 or response.json().get("running") is not True:
            return False
        self.info = info
        return True

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> float:
        """Send ``sig`` and wait for the exit; the seconds it took."""
        assert self.proc is not None, f"{self.name} was never started"
        assert self.proc.poll() is None, f"{self.name} is not running"
        self._close_http()
        start = time.monotonic()
        os.kill(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"node {self.name} did not exit within {timeout} s of {signal.Signals(sig).name}"
            ) from None
        return time.monotonic() - start

    def kill(self) -> None:
        self._close_http()
        if self.proc is not None and self.proc.poll() is None:
            self.unclean_ok = True
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def _close_http(self) -> None:
        if self.http is not None:
            self.http.close()
            self.http = None

    def log(self, limit: int = MAX_LOG_REPORT) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log: never started)"
        return text if len(text) <= limit else "...\n" + text[-limit:]

    # ---- the API

    def request(
        self, method: str, path: str, *, auth: bool | str = False, **kw: Any
    ) -> httpx.Response:
        assert self.http is not None, f"{self.name} is not running"
        headers = dict(kw.pop("headers", {}))
        if auth:
            headers["Authorization"] = f"Bearer {self.token if auth is True else auth}"
        return self.http.request(method, path, headers=headers, **kw)

    def get(self, path: str) -> Any:
        """GET an API path that must answer 200; its JSON."""
        response = self.request("GET", path)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST JSON with the token to an authoring path that must answer 201; its JSON."""
        response = self.request("POST", path, auth=True, json=body)
        assert response.status_code == 201, (path, response.status_code, response.text)
        return response.json()

    def status(self) -> dict[str, Any]:
        value: dict[str, Any] = self.get("/api/v1/status")
        return value

    def peer_ids(self) -> set[str]:
        return {p["peer_id"] for p in self.get("/api/v1/peers")}

    def has_record(self, record_id: str) -> bool:
        return self.request("GET", f"/api/v1/records/{record_id}").status_code == 200

    def views(self, project: str) -> dict[str, Any]:
        """The project's views through the API (cheap enough to poll)."""
        base = f"/api/v1/projects/{project}"
        return {
            "show": self.get(base),
            "ledger": self.get(base + "/ledger"),
            "shares": self.get(base + "/shares"),
        }

    def cli_views(self, project: str) -> dict[str, Any]:
        """The same views through the CLI, which reads the store directly."""
        return {
            "show": self.cli("project", "show", project),
            "ledger": self.cli("ledger", project),
            "shares": self.cli("shares", project),
        }


class Nodes:
    """Creates homes and nodes under one tmp dir, and stops every process it started."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cli_log = CliLog()
        self.all: list[NodeProcess] = []
        self.hung: list[str] = []

    def home(self, name: str, display_name: str | None = None) -> NodeProcess:
        """A new home, initialised (``commons init``), with no node running."""
        node = NodeProcess(name, self.root, self.cli_log)
        self.all.append(node)
        node.init(display_name)
        return node

    def start(
        self, name: str, *bootstrap: NodeProcess | str, display_name: str | None = None
    ) -> NodeProcess:
        """A new home with its node running (bootstrapped to ``bootstrap``)."""
        return self.home(name, display_name).start(*bootstrap)

    def shutdown(self) -> None:
        """SIGTERM every live process at once, then SIGKILL what did not exit in time."""
        live = [n for n in self.all if n.running]
        for node in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10.0
        for node in self.all:
            node._close_http()
            if node.proc is None:
                continue
            try:
                node.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.hung.append(node.name)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(node.pid, signal.SIGKILL)
                node.proc.wait(10)

    def problems(self) -> list[str]:
        """After :meth:`shutdown`: nodes that did not exit cleanly or logged a traceback."""
        found = [f"node {name} did not exit within 10 s of SIGTERM" for name in self.hung]
        for node in self.all:
            if node.proc is None:
                continue
            if node.name not in self.hung and not node.unclean_ok and node.proc.returncode != 0:
                found.append(f"node {node.name} exited with {node.proc.returncode}")
            if "Traceback" in node.log():
                found.append(f"node {node.name} logged a traceback")
        return found


@contextlib.contextmanager
def node_factory(root: Path) -> Iterator[Nodes]:
    """Homes and nodes under ``root``; on leaving, every process is stopped (SIGTERM, then
    SIGKILL after 10 s), and each must have exited with 0 and logged no traceback."""
    factory = Nodes(root)
    try:
        yield factory
    finally:
        factory.shutdown()
    problems = factory.problems()
    assert not problems, "; ".join(problems)


# ------------------------------------------------------------------------------------------
# Network helpers


def wait_connected(a: NodeProcess, b: NodeProcess, timeout: float = SPREAD_TIMEOUT) -> None:
    """Poll until ``a`` and ``b`` each list the other among their connected peers."""
    wait_until(
        lambda: b.peer_id in a.peer_ids() and a.peer_id in b.peer_ids(),
        timeout=timeout,
        what=f"{a.name} and {b.name} to be connected",
    )


def wait_same_views(
    project: str, *group: NodeProcess, timeout: float = SPREAD_TIMEOUT, **expected: Any
) -> dict[str, Any]:
    """Poll until every node of ``group`` shows the same project views (through the API) and
    the same record count, and the views have the ``expected`` values (``show``, ``ledger``,
    ``shares``); return the views."""

    def same() -> dict[str, Any] | None:
        counts = {n.status()["records"] for n in group}
        views = [n.views(project) for n in group]
        if len(counts) != 1 or any(v != views[0] for v in views):
            return None
        if any(views[0][k] != v for k, v in expected.items()):
            return None
        return views[0]

    names = ", ".join(n.name for n in group)
    return wait_until(same, timeout=timeout, what=f"the same views of {project[:12]} on {names}")
