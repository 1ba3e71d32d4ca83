"""The shares' lines written straight as JSON text are the lines ``share_json`` makes, in
the order ``share_lines`` defines, encoded as the API encodes a list of dicts."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from protocol.shares import DENOMINATOR, share_json, share_json_text, share_lines

KEYS = st.binary(min_size=32, max_size=32)
#: Handles with characters JSON must escape, and ones it writes as they are.
NAMES = st.text(alphabet=st.sampled_from('ab"\\\n\t\u00e9\u2028\U0001f600/'), max_size=8)


@st.composite
def tallies(
    draw: st.DrawFn,
) -> tuple[dict[bytes, int], dict[bytes, int], dict[bytes, int], dict[bytes, str]]:
    keys = draw(st.lists(KEYS, max_size=30, unique=True))
    # Few distinct values, so that ties on every key but the last are common.
    small = st.integers(0, 3)
    contributions = {k: draw(st.integers(1, 4)) for k in keys}
    claimed = {
        k: draw(small) * draw(st.sampled_from([1, DENOMINATOR, DENOMINATOR // 7])) for k in keys
    }
    endorsed = {
        k: draw(small) * DENOMINATOR // draw(st.integers(1, 5)) for k in keys if draw(st.booleans())
    }
    handles = {k: "email:" + draw(NAMES) for k in keys if draw(st.booleans())}
    return contributions, claimed, endorsed, handles


@given(tallies())
def test_the_text_is_the_json_of_the_lines(
    sums: tuple[dict[bytes, int], dict[bytes, int], dict[bytes, int], dict[bytes, str]],
) -> None:
    lines = share_json(*sums)
    text = share_json_text(*sums)
    assert text == json.dumps(lines, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    assert json.loads(text) == lines


@given(tallies())
def test_the_order_is_by_value_then_time_then_count_then_key(
    sums: tuple[dict[bytes, int], dict[bytes, int], dict[bytes, int], dict[bytes, str]],
) -> None:
    contributions, claimed, endorsed, _ = sums
    expected = sorted(
        contributions, key=lambda p: (-endorsed.get(p, 0), -claimed[p], -contributions[p], p)
    )
    assert [s.contributor for s in share_lines(*sums)] == expected
