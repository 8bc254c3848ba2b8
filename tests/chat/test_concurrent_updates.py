"""Concurrent changes to one conversation record true before/after states in the ledger, and
outcome tags are validated strictly (over real HTTP)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.api.server import LiveServer, live_server

RESOLUTIONS = ("resolved", "escalated", "abandoned")
TAGS = ("conversion", "deflection", "lead_capture", "vip")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(tmp_path / "data") as live:
        yield live


def _conversation(server: LiveServer) -> str:
    with server.client() as api:
        bot = api.post("/chatbots", json={"name": "Support"}).json()
        conv = api.post(f"/chatbots/{bot['id']}/conversations", json={}).json()
    return str(conv["id"])


def _patches(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for _ in range(count):
        body: dict[str, Any] = {}
        if rng.random() < 0.7:
            body["resolution"] = rng.choice(RESOLUTIONS)
        if not body or rng.random() < 0.6:
            body["outcome_tags"] = rng.sample(TAGS, rng.randint(0, 3))
        out.append(body)
    return out


def test_concurrent_patches_record_a_consistent_chain_of_states(server: LiveServer) -> None:
    conv_id = _conversation(server)
    keys = [server.admin_key, server.key("agent")]
    clients = [server.client(k) for k in keys]
    try:
        jobs = list(enumerate(_patches(60, seed=7)))

        def patch(job: tuple[int, dict[str, Any]]) -> int:
            index, body = job
            response = clients[index % 2].patch(f"/conversations/{conv_id}", json=body)
            return response.status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            statuses = list(pool.map(patch, jobs))
        assert statuses == [200] * len(jobs)
        row = clients[0].get(f"/conversations/{conv_id}").json()
    finally:
        for client in clients:
            client.close()

    ledger = server.platform.ledger
    records = [
        r
        for r in ledger.records(0, ledger.size())
        if r.entry.attributes.get("conversation_id") == conv_id
        and r.entry.action in ("conversation.resolution", "conversation.outcome")
    ]
    resolution, tags = "open", set[str]()
    resolutions = outcomes = 0
    for record in sorted(records, key=lambda r: r.entry.seq):
        attrs = record.entry.attributes
        if record.entry.action == "conversation.resolution":
            resolutions += 1
            assert attrs["previous"] == resolution, (record.entry.seq, attrs)
            assert attrs["resolution"] != resolution
            resolution = attrs["resolution"]
        else:
            outcomes += 1
            removed, added = set(attrs["removed"]), set(attrs["added"])
            assert removed <= tags and not added & tags, (record.entry.seq, tags, attrs)
            assert (tags - removed) | added == set(attrs["tags"]), (record.entry.seq, attrs)
            assert set(attrs["tags"]) != tags
            tags = set(attrs["tags"])
    assert resolutions > 1 and outcomes > 1
    assert row["resolution"] == resolution
    assert set(row["outcome_tags"]) == tags
    assert ledger.verify().ok


@pytest.mark.parametrize(
    "raw",
    [
        b'{"outcome_tags": ["\\udfff"]}',
        b'{"outcome_tags": ["ok", "a\\ud800b"]}',
        b'{"outcome_tags": ["bell\\u0007"]}',
        b'{"outcome_tags": [""]}',
        b'{"outcome_tags": ["   "]}',
        b'{"outcome_tags": ["' + b"x" * 65 + b'"]}',
    ],
)
def test_invalid_outcome_tags_are_rejected_as_invalid_input(server: LiveServer, raw: bytes) -> None:
    conv_id = _conversation(server)
    size = server.platform.ledger.size()
    with server.client() as api:
        response = api.patch(
            f"/conversations/{conv_id}",
            content=raw,
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 422, response.text
        assert api.get(f"/conversations/{conv_id}").json()["outcome_tags"] == []
        ok = api.patch(f"/conversations/{conv_id}", json={"outcome_tags": ["conversion", "é✓"]})
        assert ok.status_code == 200, ok.text
        assert ok.json()["outcome_tags"] == ["conversion", "é✓"]
    assert server.platform.ledger.size() > size
