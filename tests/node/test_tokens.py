"""Scoped API tokens (node.tokens): the file, its changes, and the check the API runs."""

from __future__ import annotations

import json
import logging
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from node.tokens import MAX_TOKENS, TOKEN_PREFIX, TokenBook, TokenError, allows


def test_a_token_is_stored_only_as_its_hash(tmp_path: Path) -> None:
    book = TokenBook(tmp_path / "tokens.json")
    assert book.tokens() == []
    secret, token = book.create("submit", "git-hook", now_ms=1_000)
    assert secret.startswith(TOKEN_PREFIX)
    assert len(secret) > 40
    data = book.path.read_text()
    assert secret not in data
    assert secret[len(TOKEN_PREFIX) :] not in data
    assert stat.S_IMODE(book.path.stat().st_mode) == 0o600
    assert book.tokens() == [token]
    assert token.public() == {
        "id": token.id,
        "name": "git-hook",
        "scope": "submit",
        "created": 1_000,
    }
    assert book.check(secret) == token
    assert book.check(secret + "x") is None
    assert book.check(secret[:-1]) is None
    assert book.check("") is None


def test_scopes() -> None:
    assert allows("all", "all")
    assert allows("all", "submit")
    assert allows("submit", "submit")
    assert not allows("submit", "all")


def test_create_refuses_bad_requests(tmp_path: Path) -> None:
    book = TokenBook(tmp_path / "tokens.json")
    with pytest.raises(TokenError, match="scope"):
        book.create("admin")
    for name in ("", " padded", "a\x1bb", "two\nlines", "x" * 65, "rtl\u202e"):
        with pytest.raises(TokenError, match="token name"):
            book.create("submit", name)
    book.create("submit", "hook")
    with pytest.raises(TokenError, match="exists already"):
        book.create("all", "hook")
    assert len(book.tokens()) == 1


def test_revocation_is_seen_at_the_next_check(tmp_path: Path) -> None:
    """The API's book and the command's book are different objects (different processes in
    real life): the API's notices every change to the file, without a restart."""
    api = TokenBook(tmp_path / "tokens.json")
    cli = TokenBook(tmp_path / "tokens.json")
    first, token = cli.create("submit")
    second, _ = cli.create("all")
    assert api.check(first) == token
    assert api.check(second) is not None
    assert cli.revoke(token.id) == token
    assert api.check(first) is None
    assert api.check(second) is not None
    with pytest.raises(TokenError, match="no token with id"):
        cli.revoke(token.id)
    third, _ = cli.create("submit")
    assert api.check(third) is not None
    os.unlink(cli.path)
    assert api.check(second) is None


def test_concurrent_changes_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda i: TokenBook(path).create("submit", f"t{i}"), range(40)))
    book = TokenBook(path)
    assert sorted(t.name or "" for t in book.tokens()) == sorted(f"t{i}" for i in range(40))
    assert all(book.check(secret) == token for secret, token in made)


def test_a_bounded_number_of_tokens(tmp_path: Path) -> None:
    book = TokenBook(tmp_path / "tokens.json")
    entry = {"id": "00000000", "name": None, "scope": "submit", "created": 0, "sha256": "0" * 64}
    entries = [{**entry, "id": f"{i:08x}"} for i in range(MAX_TOKENS)]
    book.path.write_text(json.dumps({"version": 1, "tokens": entries}))
    with pytest.raises(TokenError, match="the most it can hold"):
        book.create("submit")


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[]",
        b'{"version": 2, "tokens": []}',
        b'{"version": 1, "tokens": {}}',
        b'{"version": 1, "tokens": [{"id": "a"}]}',
        b'{"version": 1, "tokens": [{"id": "a", "name": null, "scope": "root", "created": 0, '
        b'"sha256": "' + b"0" * 64 + b'"}]}',
        b" " * 300_000,
    ],
)
def test_a_damaged_file_accepts_no_scoped_token(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    book = TokenBook(tmp_path / "tokens.json")
    secret, _ = book.create("all")
    assert book.check(secret) is not None
    book.path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="node.tokens"):
        assert book.check(secret) is None
    assert "no scoped token is accepted" in caplog.text
    with pytest.raises(TokenError, match=str(book.path)):
        book.tokens()
