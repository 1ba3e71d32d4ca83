"""scripts/negentropy-harness: two harness processes reconcile through the line protocol."""

from __future__ import annotations

import os
import random
import subprocess
import threading
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "scripts" / "negentropy-harness"
TIMEOUT = 60.0  # seconds for one whole exchange; a hung harness is killed and the test fails


class Harness:
    """One harness process; run directly (so its shebang is what starts it)."""

    def __init__(self, cwd: Path, items: list[tuple[int, bytes]], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [str(HARNESS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=env,
        )
        self.watchdog = threading.Timer(TIMEOUT, self.proc.kill)
        self.watchdog.start()
        assert self.proc.stdin is not None
        self.proc.stdin.write("".join(f"item,{ts},{id_.hex()}\n" for ts, id_ in items))
        self.proc.stdin.write("seal\n")

    def send(self, line: str) -> tuple[str, list[str], list[str]]:
        """Send one command; return the closing line (msg,... or done) and have/need ids."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        have: list[str] = []
        need: list[str] = []
        while True:
            out = self.proc.stdout.readline()
            assert out, f"harness ended early: {self.close()}"
            kind, _, rest = out.strip().partition(",")
            if kind == "have":
                have.append(rest)
            elif kind == "need":
                need.append(rest)
            else:
                assert kind in ("msg", "done"), out
                return out.strip(), have, need

    def close(self) -> str:
        """Stop the process; return its stderr."""
        self.watchdog.cancel()
        try:
            _, err = self.proc.communicate(timeout=10)  # closes stdin: the harness ends
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


def env_with(limit: int | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FRAMESIZELIMIT"}
    if limit is not None:
        env["FRAMESIZELIMIT"] = str(limit)
    env.update(extra)
    return env


def random_sets(
    seed: int, common: int, only_a: int, only_b: int
) -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]]]:
    rnd = random.Random(seed)
    total = common + only_a + only_b

    def item() -> tuple[int, bytes]:
        return 1_677_970_534 + rnd.randrange(max(total, 1)), rnd.randbytes(32)

    shared = [item() for _ in range(common)]
    return shared + [item() for _ in range(only_a)], shared + [item() for _ in range(only_b)]


def reconcile(
    cwd: Path,
    a: list[tuple[int, bytes]],
    b: list[tuple[int, bytes]],
    env_a: dict[str, str],
    env_b: dict[str, str],
) -> tuple[set[str], set[str], int]:
    """Run the exchange to ``done``; return the initiator's have and need ids and rounds."""
    initiator, responder = Harness(cwd, a, env_a), Harness(cwd, b, env_b)
    have: list[str] = []
    need: list[str] = []
    rounds = 0
    try:
        line, _, _ = initiator.send("initiate")
        while line != "done":
            reply, extra_have, extra_need = responder.send(line)
            assert not extra_have
            assert not extra_need
            assert reply.startswith("msg,")
            line, got_have, got_need = initiator.send(reply)
            have += got_have
            need += got_need
            rounds += 1
    finally:
        errors = initiator.close() + responder.close()
    assert errors == ""
    assert len(have) == len(set(have))
    assert len(need) == len(set(need))
    return set(have), set(need), rounds


@pytest.mark.parametrize(
    ("common", "only_a", "only_b", "limit"),
    [
        (0, 0, 0, None),
        (2000, 0, 0, None),  # identical
        (0, 1000, 1000, 4096),  # disjoint
        (20000, 5, 5, None),  # large, small difference
        (5000, 0, 3000, 4096),  # subset, frames limited
        (9000, 1000, 1000, 60000),
        (0, 10000, 10000, 60000),  # 20k, disjoint
    ],
    ids=[
        "empty",
        "identical",
        "disjoint",
        "20k-small-diff",
        "subset-framed",
        "10k-mixed",
        "20k-disjoint",
    ],
)
def test_two_harnesses_reconcile(
    tmp_path: Path, common: int, only_a: int, only_b: int, limit: int | None
) -> None:
    a, b = random_sets(common + only_a + only_b, common, only_a, only_b)
    have, need, rounds = reconcile(tmp_path, a, b, env_with(limit), env_with(limit))
    ids_a, ids_b = {id_.hex() for _, id_ in a}, {id_.hex() for _, id_ in b}
    assert have == ids_a - ids_b
    assert need == ids_b - ids_a
    assert rounds >= 1


def test_frame_limit_from_the_command_line_and_without_the_venv(tmp_path: Path) -> None:
    a, b = random_sets(7, 300, 0, 400)
    minimal = {"PATH": "/usr/local/bin:/usr/bin:/bin"}  # no venv on PATH: stdlib suffices
    initiator = Harness(tmp_path, a, minimal)
    responder = subprocess.Popen(
        [str(HARNESS), "--frame-size-limit", "4096"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=minimal,
    )
    try:
        message, _, _ = initiator.send("initiate")
        lines = "".join(f"item,{ts},{id_.hex()}\n" for ts, id_ in b) + "seal\n" + message + "\n"
        out, _ = responder.communicate(lines, timeout=TIMEOUT)
    finally:
        initiator.close()
    reply = out.strip()
    assert reply.startswith("msg,")
    assert len(reply) // 2 - 2 <= 4096  # the ids did not fit in one frame
    assert len(reply) // 2 > 3000


def test_version_negotiation_and_errors(tmp_path: Path) -> None:
    run = subprocess.run(
        [str(HARNESS)],
        input="seal\nmsg,62aabb\nmsg,\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=TIMEOUT,
        env=env_with(None),
    )
    assert run.stdout == "msg,61\n"  # answers an unknown version with its own ...
    assert run.returncode == 1  # ... but an empty message is an error
    assert run.stderr.startswith("error: truncated")

    for bad in ["initiate\n", "seal\nbogus\n", "item,1,zz\n", "seal\nseal\n"]:
        run = subprocess.run(
            [str(HARNESS)],
            input=bad,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=TIMEOUT,
            env=env_with(None),
        )
        assert run.returncode == 1, bad
        assert run.stderr.startswith("error: "), bad
    run = subprocess.run(
        [str(HARNESS)],
        input="",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=TIMEOUT,
        env=env_with(100),
    )
    assert run.returncode == 1
    assert "frame_size_limit" in run.stderr
