"""Shared pieces of the benchmark: statistics, the process registry, node homes, HTTP, /proc.

Everything the benchmark starts goes through :class:`Processes`, which puts each child in its
own process group and kills every group it knows at exit (``atexit`` and signal handlers), so
no node outlives a run, even one that failed or was interrupted.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
COMMONS = str(VENV_BIN / "commons")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Statistics


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """Median, min and max of the repetitions (None when nothing was measured)."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {
        "median": statistics.median(vals),
        "min": min(vals),
        "max": max(vals),
        "n": len(vals),
    }


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100)."""
    vals = sorted(values)
    if not vals:
        return None
    rank = max(1, min(len(vals), round(p / 100 * len(vals) + 0.5)))
    return vals[rank - 1]


def ratio(value: float | None, limit: float | None) -> float | None:
    if value is None or not limit:
        return None
    return value / limit


# --------------------------------------------------------------------------------------------
# Processes


class Processes:
    """Every child process of the run; each in its own session (process group)."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []
        atexit.register(self.kill_all)
        for signum in (signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(ValueError):  # not the main thread
                signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.kill_all()
        raise SystemExit(128 + signum)

    def start(
        self,
        argv: Sequence[str],
        *,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        out: Any = subprocess.DEVNULL
        if log_path is not None:
            out = log_path.open("ab")
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if log_path is not None else subprocess.DEVNULL,
                env=env or child_env(),
                start_new_session=True,
            )
        finally:
            if log_path is not None:
                out.close()
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after ``timeout``."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if proc in self._procs:
            self._procs.remove(proc)

    def stop_many(self, procs: Iterable[subprocess.Popen[bytes]], timeout: float = 10.0) -> None:
        procs = list(procs)
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        for proc in procs:
            self.stop(proc, timeout=0.1)

    def kill_all(self) -> None:
        for proc in list(self._procs):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                proc.wait(5)
        self._procs.clear()


PROCS = Processes()


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "COMMONS_HOME"}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(REPO)
    return env


#: Listening ports come from below the kernel's ephemeral range (32768 and up by default):
#: a port the kernel hands out for binding to port 0 may be taken moments later as the
#: source port of some node's outgoing connection, and the node meant to listen there fails.
_PORTS = iter(range(20_000 + (os.getpid() % 50) * 200, 32_000))


def free_port() -> int:
    """A listening port on 127.0.0.1 that is free now and that this run has not handed out."""
    for port in _PORTS:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port left below the ephemeral range")


# --------------------------------------------------------------------------------------------
# /proc


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its threads included), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_SIZE


def with_children(pid: int) -> list[int]:
    """``pid`` and the processes it started that run now (a node's API front process, and
    its helpers while they work): what a node costs is what all of them cost."""
    found = [pid]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        if parent == pid:
            found.append(int(entry))
    return found


def tree_cpu_rss(pid: int) -> tuple[float, int]:
    """CPU seconds and resident bytes of ``pid`` and its children (:func:`with_children`)."""
    cpu, rss = 0.0, 0
    for each in with_children(pid):
        try:
            cpu, rss = cpu + cpu_seconds(each), rss + rss_bytes(each)
        except OSError:
            continue  # a helper that left meanwhile
    return cpu, rss


# --------------------------------------------------------------------------------------------
# HTTP (stdlib: the bench process stays light)


def http_json(
    url: str,
    *,
    method: str = "GET",
    body: Any = None,
    raw: bytes | None = None,
    token: str | None = None,
    timeout: float = 60.0,
) -> Any:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header(
            "Content-Type", "application/octet-stream" if raw is not None else "application/json"
        )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        payload = response.read()
    ctype = response.headers.get("content-type", "")
    return json.loads(payload) if "json" in ctype else payload.decode()


def metric(text: str, name: str) -> float:
    """Sum of every series of ``name`` in a Prometheus text page."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_until(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
        except Exception as exc:  # not yet: a node still starting
            last_exc = exc
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} ({last_exc!r})")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# Nodes: real `commons node run` processes


@dataclass
class NodeProc:
    name: str
    home: Path
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    api: str = ""
    peer_id: str = ""
    token: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def addr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.port}/p2p/{self.peer_id}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def get(self, path: str, timeout: float = 60.0) -> Any:
        return http_json(self.api + path, timeout=timeout)

    def post(self, path: str, body: Any = None, raw: bytes | None = None, timeout: float = 60.0):
        return http_json(
            self.api + path, method="POST", body=body, raw=raw, token=self.token, timeout=timeout
        )

    def records(self) -> int:
        return int(self.get("/api/v1/status")["records"])

    def db(self) -> sqlite3.Connection:
        """The node's store, read-only (WAL readers do not disturb the node)."""
        uri = f"file:{self.home / 'ledger.db'}?mode=ro"
        return sqlite3.connect(uri, uri=True, timeout=10)


def peer_id_of(name: str) -> str:
    from protocol.signing import SigningKey
    from protocol.testing import seed

    return SigningKey(seed(f"bench-node:{name}")).peer_id


def name_below(base: str, peer_id: str) -> str:
    """A node name starting with ``base`` whose peer id sorts below ``peer_id``: on connect,
    only the side with the smaller peer id starts a sync session, so that one is the client."""
    for i in range(1000):
        name = f"{base}-{i}" if i else base
        if peer_id_of(name) < peer_id:
            return name
    raise RuntimeError("no name found")


def make_home(
    root: Path,
    name: str,
    *,
    template_db: Path | None = None,
    gossip_rate: int | None = None,
    sync_interval: float | None = None,
) -> NodeProc:
    """A node home with a deterministic identity (seed from the name), optionally pre-filled."""
    from node.home import Home
    from protocol.signing import SigningKey, seed_to_pem
    from protocol.testing import seed

    home_dir = root / name
    home_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_seed = seed(f"bench-node:{name}")
    key_path = home_dir / "identity.key"
    if not key_path.exists():
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(seed_to_pem(key_seed))
    home = Home(home_dir)
    home.init()
    if template_db is not None and not (home_dir / "ledger.db").exists():
        copy_file(template_db, home_dir / "ledger.db")
    limits = []
    if gossip_rate is not None:
        limits.append(f"gossip_rate = {gossip_rate}")
    if sync_interval is not None:
        limits.append(f"sync_interval = {sync_interval}")
    if limits:
        text = home.config_path.read_text()
        lines = [ln for ln in text.splitlines() if not ln.startswith(("gossip_rate", "sync_int"))]
        text = "\n".join(lines) + "\n"
        text = text.replace("[limits]\n", "[limits]\n" + "\n".join(limits) + "\n", 1)
        home.config_path.write_text(text)
    node = NodeProc(name=name, home=home_dir)
    node.peer_id = SigningKey(key_seed).peer_id
    node.token = home.api_token()
    return node


def copy_file(src: Path, dst: Path) -> None:
    with src.open("rb") as fi, dst.open("wb") as fo:
        while chunk := fi.read(1 << 22):
            fo.write(chunk)


def start_node(
    node: NodeProc,
    *,
    bootstrap: Sequence[str] = (),
    log_level: str = "warning",
    extra_args: Sequence[str] = (),
) -> NodeProc:
    """Start ``commons node run`` on a fixed free port (so peers can name it before it runs)."""
    if not node.port:
        node.port = free_port()
    api_port = free_port()
    node.api = f"http://127.0.0.1:{api_port}"
    argv = [
        COMMONS,
        "--home",
        str(node.home),
        "node",
        "run",
        "--listen",
        f"/ip4/127.0.0.1/tcp/{node.port}",
        "--api",
        f"127.0.0.1:{api_port}",
        "--no-mdns",
        "--log-level",
        log_level,
        *extra_args,
    ]
    for addr in bootstrap:
        argv += ["--bootstrap", addr]
    node.proc = PROCS.start(argv, log_path=node.home.parent / f"{node.name}.log")
    return node


def wait_ready(nodes: Sequence[NodeProc], timeout: float = 60.0) -> None:
    def ready() -> bool:
        for n in nodes:
            if n.proc is not None and n.proc.poll() is not None:
                raise RuntimeError(f"node {n.name} exited with {n.proc.returncode}: {tail(n)}")
        return all((n.home / "node.json").exists() for n in nodes)

    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"nodes did not start in {timeout:.0f} s")
        time.sleep(0.05)
    for n in nodes:
        wait_until(lambda n=n: n.get("/api/v1/status", timeout=5), timeout, what=f"{n.name} API")


def tail(node: NodeProc, n: int = 2000) -> str:
    path = node.home.parent / f"{node.name}.log"
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def stop_nodes(nodes: Iterable[NodeProc]) -> None:
    PROCS.stop_many([n.proc for n in nodes if n.proc is not None])


def dir_size(path: Path, names: Iterable[str]) -> int:
    return sum((path / name).stat().st_size for name in names if (path / name).exists())
