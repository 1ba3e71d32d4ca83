"""The node's home folder: identity key, config, API token, node.json (docs/INTERFACES.md).

The private key lives only in ``identity.key`` (PKCS#8 PEM, mode 0600, never overwritten) and
is never logged. The same Ed25519 key is the node's libp2p identity and the author key of the
records it signs, so a node's peer id is its contributor id.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import stat
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.errors import ProtocolError
from protocol.signing import SigningKey, seed_from_pem, seed_to_pem

__all__ = ["Config", "Home", "HomeError", "resolve_home"]

KEY_FILE = "identity.key"
CONFIG_FILE = "config.toml"
STORE_FILE = "ledger.db"
TOKEN_FILE = "api.token"
TOKENS_FILE = "tokens.json"
NODE_FILE = "node.json"

DEFAULT_LISTEN = "/ip4/0.0.0.0/tcp/4710"
DEFAULT_API = "127.0.0.1:4711"
#: Bounds on what a config file may ask for, so a typo cannot exhaust the machine.
MAX_CONFIG_SIZE = 1 << 20
MAX_CONFIG_LIST = 256


class HomeError(Exception):
    """The home folder or one of its files is unusable; the message says what to do."""


DEFAULT_CONFIG = f"""\
# Commons node configuration. Command-line flags override these values.

[node]
# Multiaddrs to listen on for peers. Port 0 picks a free port (node.json tells which).
listen = ["{DEFAULT_LISTEN}"]
# Peers to dial at start-up and whenever the node has none: full multiaddrs with /p2p/<peer id>.
bootstrap = []
# Addresses to advertise to peers instead of the listen addresses, for a node behind NAT or a
# proxy (a seed on a VPS): /ip4/203.0.113.7/tcp/4710 or /dns4/seed.example.org/tcp/4710.
announce = []
# Addresses never to advertise: a prefix (/ip4/10.0.0.5) or a network (/ip4/10.0.0.0/ipcidr/8).
no_announce = []
# The local HTTP API address. Keep it on loopback: reads are open to anyone who can reach it.
api = "{DEFAULT_API}"
# Hold it through the API's gate (a small process, about 11 MB), so that while the node is busy
# (a catch-up, a big import) the API's front process answers ledger and shares at once (about
# 35 MB while it runs); false: the node serves it alone, and those two wait during a catch-up.
api_front = true
# Discover peers on the local network with mDNS.
mdns = true
# Project ids to hold. Empty: hold every project (the default).
follow = []
# A seed node holds everything and accepts more connections.
seed = false
# Ask connected peers for theirs, and answer their asks (peer exchange). A seed that should
# not hand its members' addresses to anyone who asks sets this to false.
peer_exchange = true

[limits]
# Most peers to keep connected at once (a seed node uses seed_max_peers).
max_peers = 32
seed_max_peers = 256
# Seconds between background reconciliations with a random peer.
sync_interval = 30
# Gossip messages accepted from one peer per second (bursts of twice that) before its
# messages are refused and it risks a ban: well above what an honest peer relays.
gossip_rate = 1000

[policy]
# What this node hosts: "all", or a list of project ids (it then holds only those).
host = "all"
# Refused on every path (gossip, sync, the API, import), never stored, forwarded or served:
# project ids, and authors' peer ids. `commons admin block-project/block-author` adds more.
block_projects = []
block_authors = []
# Limits: the store's size in MiB, and records held per project; 0 means no limit. At a
# limit the node keeps serving what it holds and refuses new records.
max_store_mb = 0
max_project_records = 0

[relay]
# Relay for nodes behind NAT (circuit relay v2): "auto" does it on a seed only; true or false.
hop = "auto"
# A relay's bounds: peers holding a slot at once, circuits one of them may have open, and
# the seconds and MiB a circuit may last and carry; a slot lasts reservation_seconds.
max_reservations = 16
max_circuits_per_peer = 4
max_circuit_seconds = 3600
max_circuit_mb = 64
reservation_seconds = 3600
# Whether peers can dial this node: "auto" asks connected peers to dial it back;
# "public" or "private" says so. A private node reserves a slot on a relay it is
# connected to (reserve = false: never) and advertises the relayed address.
reachability = "auto"
reserve = true
# Try to turn a relayed connection into a direct one (DCUtR hole punching).
hole_punch = true
"""


@dataclass
class Config:
    listen: list[str] = field(default_factory=lambda: [DEFAULT_LISTEN])
    bootstrap: list[str] = field(default_factory=list)
    announce: list[str] = field(default_factory=list)
    no_announce: list[str] = field(default_factory=list)
    api: str = DEFAULT_API
    api_front: bool = True
    mdns: bool = True
    follow: list[str] = field(default_factory=list)
    seed: bool = False
    peer_exchange: bool = True
    max_peers: int = 32
    seed_max_peers: int = 256
    sync_interval: float = 30.0
    gossip_rate: int = 1000
    host: str | list[str] = "all"
    block_projects: list[str] = field(default_factory=list)
    block_authors: list[str] = field(default_factory=list)
    max_store_mb: int = 0
    max_project_records: int = 0
    hop: bool | str = "auto"
    max_reservations: int = 16
    max_circuits_per_peer: int = 4
    max_circuit_seconds: int = 3600
    max_circuit_mb: int = 64
    reservation_seconds: int = 3600
    reachability: str = "auto"
    reserve: bool = True
    hole_punch: bool = True


_NODE_KEYS: dict[str, type | tuple[type, ...]] = {
    "listen": list,
    "bootstrap": list,
    "announce": list,
    "no_announce": list,
    "api": str,
    "api_front": bool,
    "mdns": bool,
    "follow": list,
    "seed": bool,
    "peer_exchange": bool,
}
_LIMIT_KEYS: dict[str, type | tuple[type, ...]] = {
    "max_peers": int,
    "seed_max_peers": int,
    "sync_interval": (int, float),
    "gossip_rate": int,
}
_POLICY_KEYS: dict[str, type | tuple[type, ...]] = {
    "host": (str, list),
    "block_projects": list,
    "block_authors": list,
    "max_store_mb": int,
    "max_project_records": int,
}
_RELAY_KEYS: dict[str, type | tuple[type, ...]] = {
    "hop": (bool, str),
    "max_reservations": int,
    "max_circuits_per_peer": int,
    "max_circuit_seconds": int,
    "max_circuit_mb": int,
    "reservation_seconds": int,
    "reachability": str,
    "reserve": bool,
    "hole_punch": bool,
}
_CHOICES = {"hop": ("auto", True, False), "reachability": ("auto", "public", "private")}


def parse_config(text: str, *, source: str = CONFIG_FILE) -> Config:
    """Parse config.toml; unknown keys and wrong types are errors that name the key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise HomeError(f"{source}: not valid TOML ({exc})") from None
    config = Config()
    for section, table in data.items():
        allowed = {
            "node": _NODE_KEYS,
            "limits": _LIMIT_KEYS,
            "policy": _POLICY_KEYS,
            "relay": _RELAY_KEYS,
        }.get(section)
        if allowed is None or not isinstance(table, dict):
            raise HomeError(f"{source}: unknown section [{section}]")
        for key, value in table.items():
            expected = allowed.get(key)
            if expected is None:
                raise HomeError(f"{source}: unknown key {key!r} in [{section}]")
            if key in _CHOICES and section == "relay" and value not in _CHOICES[key]:
                choices = " or ".join(str(c).lower() for c in _CHOICES[key])
                raise HomeError(f"{source}: relay.{key} must be {choices}")
            takes_bool = expected is bool or (isinstance(expected, tuple) and bool in expected)
            if isinstance(value, bool) and not takes_bool:
                raise HomeError(f"{source}: {section}.{key} has the wrong type")
            if not isinstance(value, expected):
                raise HomeError(f"{source}: {section}.{key} has the wrong type")
            if isinstance(value, list) and (
                len(value) > MAX_CONFIG_LIST or not all(isinstance(v, str) for v in value)
            ):
                raise HomeError(f"{source}: {section}.{key} must be a list of strings")
            # The policy's limits are off at 0; other numbers must be positive.
            if _too_small(section, value):
                raise HomeError(f"{source}: {section}.{key} must be positive")
            if key == "host" and (value != "all" if isinstance(value, str) else not value):
                raise HomeError(f'{source}: policy.host is "all" or a list of project ids')
            setattr(config, key, value)
    return config


def _too_small(section: str, value: object) -> bool:
    """Numbers must be positive; the policy's limits may also be 0 (no limit)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    return value < 0 or (value == 0 and section != "policy")


def resolve_home(explicit: str | None) -> Path:
    """``--home``, else ``$COMMONS_HOME``, else ``$XDG_DATA_HOME/commons``."""
    if explicit:
        return Path(explicit).expanduser().absolute()
    env = os.environ.get("COMMONS_HOME")
    if env:
        return Path(env).expanduser().absolute()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg).expanduser().absolute() / "commons"


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 atomically; never replace an existing file."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if path exists: an existing key is never overwritten
    finally:
        tmp.unlink()


@dataclass
class Home:
    path: Path

    @property
    def key_path(self) -> Path:
        return self.path / KEY_FILE

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def store_path(self) -> Path:
        return self.path / STORE_FILE

    @property
    def token_path(self) -> Path:
        return self.path / TOKEN_FILE

    @property
    def tokens_path(self) -> Path:
        """Scoped API tokens (``commons token``), see :mod:`node.tokens`."""
        return self.path / TOKENS_FILE

    @property
    def node_path(self) -> Path:
        return self.path / NODE_FILE

    def exists(self) -> bool:
        return self.key_path.exists()

    def init(self) -> bool:
        """Create whatever is missing; return True if a new identity was created."""
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        created = False
        if not self.key_path.exists():
            try:
                _write_private(self.key_path, seed_to_pem(secrets.token_bytes(32)))
                created = True
            except FileExistsError:
                pass  # another process created it first: keep theirs
        if not self.token_path.exists():
            with contextlib.suppress(FileExistsError):
                _write_private(self.token_path, secrets.token_urlsafe(32).encode() + b"\n")
        if not self.config_path.exists():
            try:
                fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                with os.fdopen(fd, "w") as f:
                    f.write(DEFAULT_CONFIG)
            except FileExistsError:
                pass
        return created

    @contextlib.contextmanager
    def building(self) -> Iterator[Home]:
        """A new home for the block to fill, moved into place whole once the block succeeds.

        It is built in a folder beside this one, so a failed ``commons init`` (a refused
        ``--name``, a store that cannot be created, an interruption) leaves no half home
        behind: on an error the folder and any parent folders made for it are removed. When
        the home's folder exists already (made for it by systemd's ``StateDirectory=`` or a
        container's volume, often in a parent this user cannot write), the building folder
        is inside it instead, and its files are moved in as for a folder with files.
        """
        made = _missing_ancestors(self.path.parent)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        where = self.path if self.path.is_dir() else self.path.parent
        staging = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.init-", dir=where))
        try:
            yield Home(staging)
            self._move_in(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            for folder in made:
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise

    def _move_in(self, staging: Path) -> None:
        """Put the home built in ``staging`` at this home's path."""
        if staging.parent != self.path:
            try:
                os.rename(staging, self.path)  # no folder yet, or an empty one: one atomic step
                return
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
        # A folder with files of its own (a config.toml written beforehand): add what it
        # lacks and keep what it has, the identity last, since a home exists once its key does.
        linked: list[Path] = []
        try:
            for name in sorted(os.listdir(staging), key=lambda n: n == KEY_FILE):
                with contextlib.suppress(FileExistsError):
                    os.link(staging / name, self.path / name)
                    linked.append(self.path / name)
        except OSError:
            for path in linked:
                path.unlink(missing_ok=True)
            raise
        shutil.rmtree(staging, ignore_errors=True)

    def require(self) -> None:
        if not self.exists():
            raise HomeError(
                f"no identity in {self.path}: run `commons init` first (or pass --home)"
            )

    def signing_key(self) -> SigningKey:
        """Load the identity; refuse a key file that others can read."""
        self.require()
        mode = self.key_path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise HomeError(
                f"{self.key_path} is accessible by other users (mode {stat.S_IMODE(mode):o}); "
                f"run `chmod 600 {self.key_path}`"
            )
        try:
            return SigningKey(seed_from_pem(self.key_path.read_bytes()[:8192]))
        except ProtocolError as exc:
            raise HomeError(f"{self.key_path}: {exc.message}") from None

    def config(self) -> Config:
        if not self.config_path.exists():
            return Config()
        data = self.config_path.read_bytes()
        if len(data) > MAX_CONFIG_SIZE:
            raise HomeError(f"{self.config_path} is larger than {MAX_CONFIG_SIZE} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise HomeError(f"{self.config_path} is not UTF-8 text") from None
        return parse_config(text, source=str(self.config_path))

    def api_token(self) -> str:
        try:
            return self.token_path.read_text().strip()
        except FileNotFoundError:
            raise HomeError(f"no API token in {self.path}: run `commons init`") from None

    # node.json: written by a running node, read by the CLI to find it.

    def write_node_info(self, info: dict[str, Any]) -> None:
        tmp = self.node_path.with_name(NODE_FILE + ".tmp")
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, self.node_path)

    def remove_node_info(self) -> None:
        self.node_path.unlink(missing_ok=True)

    def running_node(self) -> dict[str, Any] | None:
        """The node.json of a live node for this home, or None (stale files are ignored)."""
        try:
            info = json.loads(self.node_path.read_text())
        except (FileNotFoundError, ValueError, OSError):
            return None
        if not isinstance(info, dict):
            return None
        pid = info.get("pid")
        if not isinstance(pid, int) or not _alive(pid):
            return None
        return info


def _missing_ancestors(folder: Path) -> list[Path]:
    """``folder`` and its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
