"""The DHT scale model (``bench/dht_scale.py``, run by ``scripts/scale``) on a small network:
lookups converge in a few hops, and followers of a niche project meet within seconds."""

from __future__ import annotations

from bench.dht_scale import K, run


def test_lookups_converge_and_niche_followers_meet() -> None:
    result = run(seed=2, nodes=600, server_share=0.25, lookups=100, niches=10)
    assert result["servers"] == 150
    assert 1 <= result["hops_p50"] <= result["hops_p99"] <= 4
    assert result["msgs_p99"] <= 4 * 10  # at most ALPHA requests a hop
    assert result["provide_msgs_p50"] >= K  # the lookup, then K ADD_PROVIDER
    assert 0 < result["meet_s_p99"] < 5.0  # lookups find an earlier follower at once
