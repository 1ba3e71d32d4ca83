"""The local policy as a pure rule (node.policy), and the service's use of it for gossip."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.policy import (
    BLOCKED,
    OVER_QUOTA,
    Policy,
    PolicyError,
    from_config,
    hosted,
    parse_author,
    parse_project,
)
from node.service import NOT_FOLLOWED, NodeService, ServiceConfig
from protocol.signing import peer_id
from protocol.sync_session import hard_refusals
from protocol.testing import EPOCH_MS, RecordFactory
from protocol.validation import META_TOPIC, project_topic

NAMES = ("alice", "bob", "carol", "dave")


@pytest.fixture
def f() -> RecordFactory:
    return RecordFactory(now_ms=EPOCH_MS)


def test_a_blocked_project_refuses_its_genesis_updates_and_everything_filed_under_it(
    f: RecordFactory,
) -> None:
    p, q = f.project("alice"), f.project("bob")
    policy = Policy(blocked_projects=frozenset({p.id}))
    c = f.contribution("carol", p)
    refused = [p, f.update("alice", p, name="Renamed"), c, f.endorsement("alice", c)]
    for record in refused:
        reason = policy.refusal(record)
        assert reason is not None
        assert reason.startswith(f"{BLOCKED}: blocked by local policy (project ")
    for record in (q, f.contribution("carol", q), f.profile("alice", name="A")):
        assert policy.refusal(record) is None


def test_a_blocked_author_refuses_everything_they_signed_and_nothing_else(
    f: RecordFactory,
) -> None:
    p = f.project("alice")
    policy = Policy(blocked_authors=frozenset({f.pub("bob")}))
    for record in (f.project("bob"), f.contribution("bob", p), f.profile("bob", name="B")):
        reason = policy.refusal(record)
        assert reason == f"{BLOCKED}: blocked by local policy (author {peer_id(f.pub('bob'))})"
    assert policy.refusal(p) is None
    assert policy.refusal(f.contribution("carol", p, coauthors=("bob",))) is None


@given(
    blocked_projects=st.sets(st.integers(0, 3)),
    blocked_authors=st.sets(st.sampled_from(NAMES)),
    project=st.integers(0, 3),
    author=st.sampled_from(NAMES),
)
def test_the_rule_and_its_three_readings_agree(
    blocked_projects: set[int], blocked_authors: set[str], project: int, author: str
) -> None:
    f = RecordFactory(now_ms=EPOCH_MS)
    projects = [f.project("alice", name=f"P{i}") for i in range(4)]
    policy = Policy(
        blocked_projects=frozenset(projects[i].id for i in blocked_projects),
        blocked_authors=frozenset(f.pub(a) for a in blocked_authors),
    )
    record = f.contribution(author, projects[project])
    blocked = project in blocked_projects or author in blocked_authors
    assert (policy.refusal(record) is not None) == blocked
    assert policy.still_refused(projects[project].id, f.pub(author)) == blocked
    assert policy.served(projects[project].id, f.pub(author)) == (not blocked)
    # The filter a sync server reads with: none at all while nothing is blocked.
    serving = policy.filter_served()
    if serving is None:
        assert not blocked_projects
        assert not blocked_authors
    else:
        assert serving(projects[project].id, f.pub(author)) == (not blocked)


def test_block_and_unblock_make_new_policies(f: RecordFactory) -> None:
    p = f.project("alice")
    empty = Policy()
    blocked = empty.with_block("project", p.id, True).with_block("author", f.pub("bob"), True)
    assert blocked.refusal(p) is not None
    assert empty.refusal(p) is None  # frozen: the old policy is unchanged
    assert blocked.with_block("project", p.id, False).refusal(p) is None
    assert blocked.with_blocks([("author", f.pub("alice"))]).refusal(f.profile("alice", name="A"))


def test_limits(f: RecordFactory) -> None:
    p = f.project("alice")
    c = f.contribution("bob", p)
    policy = Policy(max_store_bytes=1000, max_project_records=3)
    assert policy.has_quota
    assert not Policy().has_quota
    assert policy.over_quota(c, store_bytes=999, project_records=2) is None
    full = policy.over_quota(c, store_bytes=1000, project_records=0)
    assert full is not None
    assert full.startswith(f"{OVER_QUOTA}: the store reached its size limit")
    capped = policy.over_quota(c, store_bytes=0, project_records=3)
    assert capped is not None
    assert capped.startswith(f"{OVER_QUOTA}: project {p.id.hex()[:16]} reached its limit of 3")
    # A profile belongs to no project: only the store's size limits it.
    assert policy.over_quota(f.profile("bob", name="B"), store_bytes=0, project_records=99) is None


def test_config_entries_are_checked_and_named(f: RecordFactory) -> None:
    p = f.project("alice")
    policy = from_config(
        block_projects=[p.id.hex().upper()],
        block_authors=[peer_id(f.pub("bob"))],
        max_store_mb=2,
        max_project_records=0,
    )
    assert policy.blocked_projects == {p.id}
    assert policy.blocked_authors == {f.pub("bob")}
    assert policy.max_store_bytes == 2 << 20
    assert policy.max_project_records is None
    assert policy.configured == {("project", p.id), ("author", f.pub("bob"))}
    with pytest.raises(PolicyError, match=r"policy\.block_projects: 'abc' is not a project id"):
        from_config(block_projects=["abc"])
    with pytest.raises(PolicyError, match=r"policy\.block_authors:"):
        from_config(block_authors=["12D3KooWnot-a-peer"])
    assert hosted("all") is None
    assert hosted([p.id.hex()]) == {p.id}
    with pytest.raises(PolicyError, match=r"policy\.host"):
        hosted("some")
    with pytest.raises(PolicyError, match=r"policy\.host"):
        hosted(["zz" * 32])
    assert parse_project(" " + p.id.hex() + "\n") == p.id
    assert parse_author(peer_id(f.pub("carol"))) == f.pub("carol")


def test_the_service_refuses_blocked_gossip_without_blame_and_forgets_on_a_new_policy(
    f: RecordFactory,
) -> None:
    p = f.project("alice")
    c = f.contribution("bob", p)
    service = NodeService(
        our_peer="me",
        rng=random.Random(1),
        policy=Policy(blocked_authors=frozenset({f.pub("bob")})),
    )
    topic = project_topic(p.id)
    assert service.gossip_validated(META_TOPIC, b"k1", p) is None
    assert service.gossip_validated(topic, b"k2", c) == BLOCKED
    assert not service.blames(BLOCKED)
    assert service.gossip_arrived(topic, b"k2", "peer", 0.0) is not None  # remembered
    service.policy_changed(Policy())
    assert service.gossip_arrived(topic, b"k2", "peer", 0.0) is None
    assert service.gossip_validated(topic, b"k2", c) is None
    # The follow rule comes first and keeps its own reason.
    following = NodeService(
        our_peer="me",
        rng=random.Random(1),
        config=ServiceConfig(follow=frozenset({b"\1" * 32})),
        policy=Policy(blocked_authors=frozenset({f.pub("bob")})),
    )
    assert following.gossip_validated(topic, b"k3", c) == NOT_FOLLOWED


def test_policy_refusals_do_not_end_a_sync_session() -> None:
    refused = ["blocked: blocked by local policy (author X)", "over-quota: full", "bad-sig: x"]
    assert hard_refusals(refused) == ["bad-sig: x"]
