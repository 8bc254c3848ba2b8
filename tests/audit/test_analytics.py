"""Analytics on a small seeded dataset: every report's figures, JSON and CSV, the API and the
CLI, and the topic grouping."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatledger.audit.analytics import AnalyticsQuery, cluster_topics, run_report
from chatledger.cli.main import app
from chatledger.config import Settings
from chatledger.errors import InvalidInput
from chatledger.events import Actor
from chatledger.identity.principal import system_principal
from chatledger.platform import Platform
from tests.api.server import LiveServer, live_server
from tests.privacy.seed import Seeded, seed

runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    platform = Platform.open(Settings.load(tmp_path_factory.mktemp("analytics") / "data"))
    try:
        data = seed(platform)
        yield data
    finally:
        platform.close()


def report(world: Seeded, name: str, **query: object) -> dict[str, object]:
    result = run_report(world.platform.ledger, name, AnalyticsQuery(**query))  # type: ignore[arg-type]
    return result.to_json()


def test_topics_are_deterministic() -> None:
    texts = [
        "How do I reset my password?",
        "Do you ship to Canada?",
        "I forgot my password and need a reset",
        "Shipping costs to Canada",
        None,
        "???",
        "Password reset link expired",
    ]
    first = cluster_topics(texts)
    assert first == cluster_topics(texts)
    a = first.assignment
    assert a[0] == a[2] == a[6] and a[1] == a[3] and a[0] != a[1]
    assert len({a[4], a[5], a[0], a[1]}) == 4
    assert first.labels[a[0]].split()[:2] in (["password", "reset"], ["reset", "password"])
    assert "canada" in first.labels[a[1]]
    assert first.labels[a[4]] == "(erased)" and first.labels[a[5]] == "(no content words)"


def test_unanswered_by_topic(world: Seeded) -> None:
    out = report(world, "unanswered")
    rows = out["items"]
    assert isinstance(rows, list)
    assert out["total"] == 4
    by_topic = {r["topic"]: r for r in rows}
    weather = next(r for t, r in by_topic.items() if "weather" in t)
    bitcoin = next(r for t, r in by_topic.items() if "bitcoin" in t)
    assert weather["count"] == 2 and bitcoin["count"] == 2
    assert set(bitcoin["examples"]) == {"Can I pay with bitcoin?", "Do you take bitcoin?"}
    assert [r["topic_id"] for r in rows] == ["t1", "t2"]
    questions = out["questions"]
    assert isinstance(questions, list) and len(questions) == 4
    assert {q["conversation_id"] for q in questions} == {
        world.conversations["alice"],
        world.conversations["bob"],
        world.conversations["carol"],
    }


def test_feedback_by_topic_and_document(world: Seeded) -> None:
    topics = report(world, "feedback-topics")
    (row,) = topics["items"]  # type: ignore[misc]
    assert "password" in row["topic"] and "reset" in row["topic"]
    assert (row["positive"], row["negative"], row["positive_ratio"]) == (1, 1, 0.5)
    docs = report(world, "feedback-documents")
    (doc,) = docs["items"]  # type: ignore[misc]
    assert doc["document_name"] == "password-reset.txt"
    assert doc["document_id"] == world.documents["password-reset.txt"]
    assert (doc["positive"], doc["negative"], doc["total"]) == (1, 1, 2)


def test_outcomes_per_day(world: Seeded) -> None:
    out = report(world, "outcomes")
    (day,) = out["items"]  # type: ignore[misc]
    assert day["conversations"] == 3
    assert (day["resolved"], day["escalated"], day["abandoned"], day["open"]) == (1, 1, 1, 0)
    assert day["resolution_rate"] == pytest.approx(1 / 3, abs=1e-6)
    assert day["tag:deflection"] == 1 and day["tag:lead_capture"] == 1
    assert day["tagged_rate"] == pytest.approx(2 / 3, abs=1e-6)
    assert "tag_rate:lead_capture" in out["columns"]  # type: ignore[operator]


def test_cited_and_uncited_documents(world: Seeded) -> None:
    cited = report(world, "cited-documents")
    names = [r["document_name"] for r in cited["items"]]  # type: ignore[attr-defined]
    assert names[0] == "password-reset.txt"
    assert "two-factor-authentication.md" in names
    top = cited["items"][0]  # type: ignore[index]
    assert top["citations"] == 2 and top["retrievals"] >= 2
    uncited = report(world, "uncited-documents")
    assert [r["document_name"] for r in uncited["items"]] == ["api-rate-limits.md"]  # type: ignore[attr-defined]
    assert uncited["documents"] == 3


def test_security_by_day_and_kind(world: Seeded) -> None:
    out = report(world, "security")
    kinds = out["by_kind"]
    assert isinstance(kinds, dict)
    assert kinds["guard.injection_detected"] >= 1 and kinds["guard.request_blocked"] == 1
    blocked = next(r for r in out["items"] if r["kind"] == "guard.request_blocked")  # type: ignore[attr-defined]
    assert blocked["blocked"] == 1 and blocked["count"] == 1


def test_filters(world: Seeded) -> None:
    ledger = world.platform.ledger
    assert report(world, "unanswered", chatbot_ids=("bot_other",))["total"] == 0
    assert report(world, "unanswered", chatbot_ids=(world.bot_id,))["total"] == 4
    assert report(world, "unanswered", start="2000-01-01", end="2000-12-31")["total"] == 0
    day = ledger.entry(0).ts[:10]
    assert report(world, "unanswered", start=day, end=day)["total"] == 4
    last_question = ledger.store.query(
        "SELECT MAX(seq) FROM ledger_entries WHERE action = 'message.unanswered'"
    )[0][0]
    after = ledger.entry(int(last_question)).ts
    assert report(world, "unanswered", start=after)["total"] == 1
    with pytest.raises(InvalidInput):
        run_report(ledger, "everything", AnalyticsQuery())
    with pytest.raises(InvalidInput):
        run_report(ledger, "security", AnalyticsQuery(start="yesterday"))


def test_csv_is_safe_for_spreadsheets(world: Seeded) -> None:
    result = run_report(world.platform.ledger, "unanswered", AnalyticsQuery())
    result.rows.append({"topic_id": "tx", "topic": "=HYPERLINK(1)", "count": -1, "examples": []})
    rows = list(csv.DictReader(io.StringIO(result.to_csv())))
    assert rows[0].keys() == set(result.columns)
    assert rows[-1]["topic"] == "'=HYPERLINK(1)" and rows[-1]["count"] == "-1"
    assert " | " in rows[0]["examples"] or rows[0]["examples"]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[LiveServer, Seeded]]:
    with live_server(tmp_path / "data") as live:
        yield live, seed(live.platform, live.workspace_id)


def test_api(served: tuple[LiveServer, Seeded]) -> None:
    live, data = served
    other_ws = live.platform.identity.create_workspace("Other", Actor("system", "tests"))
    seed(live.platform, other_ws)  # another workspace's questions are not counted
    with live.client(live.key("viewer")) as api:
        listed = api.get("/analytics").json()["items"]
        assert {r["name"] for r in listed} >= {"unanswered", "outcomes", "security"}
        out = api.get("/analytics/unanswered")
        assert out.status_code == 200, out.text
        body = out.json()
        assert body["total"] == 4 and body["filters"]["chatbot_ids"] == [data.bot_id]
        as_csv = api.get("/analytics/outcomes", params={"format": "csv"})
        assert as_csv.status_code == 200
        assert as_csv.headers["content-type"].startswith("text/csv")
        (row,) = list(csv.DictReader(io.StringIO(as_csv.text)))
        assert row["conversations"] == "3" and row["resolved"] == "1"
        one = api.get("/analytics/feedback-documents", params={"chatbot_id": data.bot_id})
        assert one.json()["items"][0]["total"] == 2
        day = live.platform.ledger.entry(0).ts[:10]
        ranged = api.get("/analytics/security", params={"from": day, "to": day}).json()
        assert ranged["total"] >= 2
        assert api.get("/analytics/nope").status_code == 404
        assert api.get("/analytics/outcomes", params={"format": "xml"}).status_code == 422
        assert api.get("/analytics/outcomes", params={"from": "soon"}).status_code == 422
        assert api.get("/analytics/outcomes", params={"chatbot_id": "bot_x"}).status_code == 404
    with live.client(live.key("agent")) as api:
        assert api.get("/analytics/unanswered").status_code == 403


def test_cli(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    platform = Platform.open(Settings.load(data_dir))
    try:
        data = seed(platform)
    finally:
        platform.close()
    common = ["--data-dir", str(data_dir)]
    result = runner.invoke(app, ["analytics", "unanswered", *common])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0].split()[:3] == ["topic_id", "topic", "count"]
    result = runner.invoke(app, ["analytics", "outcomes", "--format", "csv", *common])
    assert result.exit_code == 0 and result.stdout.startswith("day,conversations,resolved")
    result = runner.invoke(
        app, ["analytics", "cited-documents", "--chatbot", data.bot_id, "--json", *common]
    )
    assert json.loads(result.stdout)["items"][0]["document_name"] == "password-reset.txt"
    result = runner.invoke(app, ["analytics", "security", "--format", "xml", *common])
    assert result.exit_code == 2
    platform = Platform.open(Settings.load(data_dir))
    try:
        rows = platform.ledger.store.query(
            "SELECT count(*) FROM ledger_entries WHERE action = 'analytics.view'"
        )
    finally:
        platform.close()
    assert rows[0][0] == 3  # each report read is recorded (the refused one ran no report)


def test_reports_are_scoped_to_the_workspace_and_their_reads_recorded(
    served: tuple[LiveServer, Seeded],
) -> None:
    """Security events of no chatbot count only for the workspace they belong to (its people,
    or naming it), and reading a report, which quotes visitors' questions, is recorded."""
    live, _ = served
    other_ws = live.platform.identity.create_workspace("Other", Actor("system", "tests"))
    other_key, _ = live.platform.identity.create_api_key(system_principal(other_ws), role="admin")
    with live.client(live.key("viewer")) as api:
        for _ in range(3):  # three refusals, recorded as access.denied by this workspace's key
            assert api.post("/chatbots", json={"name": "x"}).status_code == 403
        mine = api.get("/analytics/security").json()
    with live.client(other_key) as api:
        theirs = api.get("/analytics/security").json()
    denied = [r for r in mine["items"] if r["kind"] == "access.denied"]
    assert sum(int(r["count"]) for r in denied) >= 3
    assert not [r for r in theirs["items"] if r["kind"] == "access.denied"], theirs

    ledger = live.platform.ledger
    views = [
        ledger.entry(int(seq))
        for (seq,) in ledger.store.query(
            "SELECT seq FROM ledger_entries WHERE action = 'analytics.view' ORDER BY seq"
        )
    ]
    assert [(v.attributes["report"], v.attributes["via"]) for v in views[-2:]] == [
        ("security", "api"),
        ("security", "api"),
    ]
    assert views[-1].attributes["workspace_id"] == other_ws
    assert views[-1].actor["type"] == "api_key"
