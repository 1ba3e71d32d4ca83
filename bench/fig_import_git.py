"""Figure 9: ``commons import-git`` of a synthetic history, commits a second.

The repository (bench/gitrepo.py: C commits on ``main`` plus one merged side commit every 50,
by A authors, with a mailmap and co-author trailers) is written by ``git fast-import`` once
and cached under the bench data folder. Each repetition imports the whole history into a
fresh home, without a node (the store, up to 50,000 records a transaction), as the CLI runs it in
its own process; then (except in the full run, where it would double the figure's time)
imports it again, every record already held: the cost of a no-op re-run.

Bare limits, measured in the same run on the same range:

* ``git log`` alone: the same fixed format and ``--name-only`` the import uses, its output
  drained through a pipe and thrown away (what reading the history must at least cost);
* strict signing alone: Ed25519 signatures (libsodium, as the import signs) of the signing
  inputs of S records of the shape the import makes, extrapolated to commits a second.

The ratio is the import's rate over the slower of the two limits (target >= 0.5x).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import data
from bench.common import COMMONS, child_env, log, make_home, ratio, summary
from bench.gitrepo import make_repo


def repository(commits: int, authors: int) -> Path:
    """The cached synthetic repository of ``commits`` commits by ``authors`` authors."""
    path = data.cache_dir() / f"gitrepo-v1-c{commits}-a{authors}"
    if not (path / ".git").exists():
        shutil.rmtree(path, ignore_errors=True)
        started = time.monotonic()
        log(f"generating a git repository: {commits:,} commits by {authors:,} authors")
        tmp = path.with_name(path.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        make_repo(tmp, commits, authors)
        tmp.replace(path)
        log(f"generated {path.name} in {time.monotonic() - started:.1f} s")
    return path


def bare_git_log(repo: Path) -> tuple[float, int]:
    """Seconds for ``git log`` with the import's format over the whole history, and commits."""
    from node.gitlog import LOG_FORMAT

    command = ["git", "-C", str(repo), "log", "--no-color", "--encoding=UTF-8", "--no-renames",
               "--name-only", f"--format={LOG_FORMAT}", "HEAD"]  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE)
    assert process.stdout is not None
    commits = 0
    while chunk := process.stdout.read(1 << 20):
        commits += chunk.count(b"\x1e")
    process.wait()
    return time.perf_counter() - started, commits


def bare_signing(samples: int) -> float:
    """Signatures a second: libsodium Ed25519 over signing inputs shaped like the import's."""
    from node.gitlog import Commit, sign_commit
    from protocol.testing import key

    signer = key("bench-import-git")
    commit = Commit("ab" * 20, 1, 1_704_067_200, b"1@example.org", (), "Change 1", ("src/f.c",))
    record = sign_commit(signer, bytes(32), commit, "https://git.example/bench.git", {})
    inputs = [record.signing_input() + i.to_bytes(4, "big") for i in range(samples)]
    started = time.perf_counter()
    for message in inputs:
        signer.sign(message)
    return samples / (time.perf_counter() - started)


def _commons(home: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [COMMONS, *args, "--home", str(home), "--json"],
        capture_output=True,
        text=True,
        env=child_env(),
        check=True,
    )
    value: dict[str, Any] = json.loads(done.stdout)
    return value


def run(size: dict[str, Any]) -> dict[str, Any]:
    commits, authors = size["git_commits"], size["git_authors"]
    repo = repository(commits, authors)
    root = Path(tempfile.mkdtemp(prefix="commons-bench-git-"))
    imports: list[float] = []
    reimports: list[float] = []
    logs: list[float] = []
    signing: list[float] = []
    total = 0
    new = 0
    try:
        for rep in range(size["reps"]):
            seconds, total = bare_git_log(repo)
            logs.append(total / seconds)
            signing.append(bare_signing(size["git_sign_samples"]))
            home = make_home(root, f"maintainer-{rep}").home
            pid = _commons(home, "project", "create", "Bench history")["id"]
            args = ("import-git", str(repo), "--project", pid, "--url", "https://git.example/b")
            started = time.perf_counter()
            result = _commons(home, *args)
            imports.append(result["commits"] / (time.perf_counter() - started))
            new = result["new"]
            if size["git_reimport"]:
                started = time.perf_counter()
                again = _commons(home, *args)
                reimports.append(again["commits"] / (time.perf_counter() - started))
                assert again["new"] == 0, again
            shutil.rmtree(home, ignore_errors=True)
            log(f"import-git rep {rep}: {imports[-1]:,.0f} commits/s")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    limit = min(summary(logs)["median"] or 0, summary(signing)["median"] or 0)
    result_import = summary(imports)
    return {
        "commits": total,
        "authors": authors,
        "new": new,
        "import_per_s": result_import,
        "reimport_per_s": summary(reimports),
        "bare_git_log_per_s": summary(logs),
        "bare_signing_per_s": summary(signing),
        "ratio": ratio(result_import["median"], limit),
    }
