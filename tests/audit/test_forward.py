"""SIEM forwarding against real receivers on loopback: syslog over TCP and TLS (octet
counting, RFC 5424 parsed strictly), Splunk HEC that fails then accepts, a signed webhook,
a restart mid-way, and a dead receiver that must not slow the ledger."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import ssl
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from chatledger.audit.forward import (
    CursorStore,
    Forwarder,
    ForwarderConfig,
    forward_once,
    load_forwarders,
    start_forwarders,
    start_jobs,
)
from chatledger.config import Settings
from chatledger.errors import InvalidInput
from chatledger.events import Actor, Entity, Event
from chatledger.ledger.service import Ledger
from tests.audit.receivers import HttpReceiver, Request, SyslogReceiver, self_signed_cert

RFC5424 = re.compile(
    rb"^<(?P<pri>\d{1,3})>1 (?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z) "
    rb"(?P<host>[!-~]{1,255}) (?P<app>[!-~]{1,48}) (?P<procid>[!-~]{1,128}) "
    rb"(?P<msgid>[!-~]{1,32}) (?P<sd>-|\[(?:[^\]\\]|\\.)*\]) (?P<msg>.*)$",
    re.DOTALL,
)


def events(n: int, start: int = 0) -> list[Event]:
    out = []
    for i in range(start, start + n):
        if i % 7 == 3:
            out.append(
                Event(
                    "guard.injection_detected",
                    Actor("anonymous", f"v{i}"),
                    Entity("message", f"m{i}"),
                    "blocked",
                    attributes={"detector": "heuristic", "score": 0.95},
                )
            )
        else:
            out.append(
                Event(
                    "message.user",
                    Actor("anonymous", f"v{i % 5}"),
                    Entity("message", f"m{i}"),
                    subject=f"v{i % 5}",
                    attributes={"chatbot_id": "bot", "conversation_id": f"c{i % 3}"},
                    payload={"text": f"text {i}"},
                )
            )
    return out


def config(base: Path, **data: Any) -> ForwarderConfig:
    data.setdefault("initial_backoff", 0.01)
    data.setdefault("max_backoff", 0.05)
    return ForwarderConfig.from_json(data, base)


def hec_seqs(requests: list[Request]) -> list[int]:
    seqs: list[int] = []
    for request in requests:
        decoder = json.JSONDecoder()
        text = request.body.decode()
        pos = 0
        while pos < len(text):
            while pos < len(text) and text[pos] in " \n\r\t":
                pos += 1
            if pos >= len(text):
                break
            obj, pos = decoder.raw_decode(text, pos)
            seqs.append(obj["event"]["seq"])
    return seqs


def parse_syslog(message: bytes) -> dict[str, Any]:
    match = RFC5424.match(message)
    assert match, message[:120]
    parts = {k: v.decode() if k != "msg" else v for k, v in match.groupdict().items()}
    pri = int(parts["pri"])
    assert 0 <= pri <= 191
    parts["facility"], parts["severity"] = divmod(pri, 8)
    return parts


def test_syslog_over_tcp_with_octet_counting(ledger: Ledger, tmp_path: Path) -> None:
    ledger.append_many(events(120))
    receiver = SyslogReceiver()
    try:
        cfg = config(
            tmp_path,
            name="siem-tcp",
            type="syslog",
            host="127.0.0.1",
            port=receiver.port,
            batch_size=50,
            sd_id="chatledger@32473",
            hostname="ledger-host",
        )
        [report] = forward_once(ledger, [cfg])
        assert report.error is None and report.delivered == 120 and report.lag == 0
        messages = receiver.wait_for(120)
    finally:
        receiver.close()
    assert receiver.errors == []
    assert len(messages) == 120
    for seq, raw in enumerate(messages):
        parts = parse_syslog(raw)
        entry = ledger.entry(seq)
        assert parts["ts"] == entry.ts
        assert parts["host"] == "ledger-host" and parts["app"] == "chatledger"
        assert parts["msgid"] == entry.action
        assert parts["facility"] == 13
        assert parts["severity"] == (3 if entry.action.startswith("guard.") else 6)
        assert f'seq="{seq}"' in parts["sd"] and f'id="{entry.id}"' in parts["sd"]
        assert parts["msg"].startswith(b"\xef\xbb\xbfCEF:0|ChatLedger|")
        assert f"cn1={seq} ".encode() in parts["msg"]
    with closing(CursorStore(ledger)) as cursors:
        row = cursors.get("siem-tcp")
    assert row is not None and row.last_seq == 119 and row.delivered == 120


def test_syslog_over_tls_verifies_the_receiver(ledger: Ledger, tmp_path: Path) -> None:
    ledger.append_many(events(30))
    cert, key = self_signed_cert(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    receiver = SyslogReceiver(tls=server_tls)
    try:
        untrusted = config(
            tmp_path, name="tls-untrusted", type="syslog", host="127.0.0.1",
            port=receiver.port, tls=True, timeout=2,
        )  # fmt: skip
        [bad] = forward_once(ledger, [untrusted], attempts=1)
        assert bad.error is not None and "certificate" in bad.error.lower()
        assert bad.delivered == 0 and bad.lag == 30
        trusted = config(
            tmp_path, name="tls", type="syslog", host="127.0.0.1", port=receiver.port,
            tls=True, ca_file=str(cert), server_name="localhost", format="leef", batch_size=7,
        )  # fmt: skip
        [report] = forward_once(ledger, [trusted])
        assert report.error is None and report.delivered == 30
        messages = receiver.wait_for(30)
    finally:
        receiver.close()
    assert len(messages) == 30
    for seq, raw in enumerate(messages):
        msg = parse_syslog(raw)["msg"]
        assert msg.startswith(b"\xef\xbb\xbfLEEF:2.0|ChatLedger|ChatLedger|")
        assert f"\tseq={seq}\t".encode() in msg


def test_splunk_hec_retries_until_accepted(ledger: Ledger, tmp_path: Path) -> None:
    ledger.append_many(events(100))
    receiver = HttpReceiver(fail_first=2, token="hec-token")
    try:
        cfg = config(
            tmp_path, name="splunk", type="splunk_hec",
            url=f"{receiver.url}/services/collector/event", token="hec-token",
            batch_size=40, index="audit",
        )  # fmt: skip
        with closing(CursorStore(ledger)) as cursors:
            forwarder = Forwarder(ledger, cfg, cursors)
            try:
                report = forwarder.run_once(attempts=5)
            finally:
                forwarder.close()
            row = cursors.get("splunk")
    finally:
        receiver.close()
    assert report.error is None and report.delivered == 100
    assert len(receiver.refused) == 2
    assert sorted(hec_seqs(receiver.accepted)) == list(range(100))
    first = receiver.accepted[0]
    assert first.headers["authorization"] == "Splunk hec-token"
    event = json.loads(first.body.decode().splitlines()[0])
    assert event["index"] == "audit" and event["sourcetype"] == "chatledger:audit"
    assert row is not None and row.last_seq == 99 and row.failures == 0
    assert row.last_error is not None and "503" in row.last_error


def test_webhook_is_signed_and_filtered(ledger: Ledger, tmp_path: Path) -> None:
    ledger.append_many(events(50))
    receiver = HttpReceiver()
    try:
        cfg = config(
            tmp_path, name="hook", type="webhook", url=f"{receiver.url}/ingest",
            secret="s3cret", categories=["security"], format="ocsf", batch_size=20,
        )  # fmt: skip
        [report] = forward_once(ledger, [cfg])
    finally:
        receiver.close()
    expected = [s for s in range(50) if s % 7 == 3]
    assert report.error is None and report.delivered == len(expected) and report.last_seq == 49
    got: list[int] = []
    for request in receiver.accepted:
        digest = hmac.new(b"s3cret", request.body, hashlib.sha256).hexdigest()
        assert request.headers["x-chatledger-signature"] == f"sha256={digest}"
        batch = json.loads(request.body)
        assert request.headers["x-chatledger-delivery"] == (
            f"hook:{batch['first_seq']}-{batch['last_seq']}"
        )
        assert {e["class_uid"] for e in batch["events"]} == {2004}
        got += [e["metadata"]["sequence"] for e in batch["events"]]
    assert got == expected


def test_restart_mid_way_loses_nothing(ledger: Ledger, tmp_path: Path) -> None:
    ledger.append_many(events(200))
    calls = {"n": 0}
    in_flight = threading.Event()

    def stall_third(request: Request) -> None:
        calls["n"] += 1
        if calls["n"] == 3:  # the receiver hangs: the sender times out, the batch is in doubt
            in_flight.set()
            time.sleep(1.5)

    first = HttpReceiver(token="t", on_request=stall_third)
    stop = threading.Event()
    base = dict(name="restart", type="splunk_hec", token="t", batch_size=30, timeout=0.5)
    try:
        cfg = config(tmp_path, url=first.url, **base)
        jobs = start_forwarders(ledger, [cfg], stop)
        assert in_flight.wait(10)
        stop.set()  # the server stops while a batch is in flight
        jobs.join(10)
        assert not any(t.is_alive() for t in jobs.threads)
    finally:
        first.close()
    with closing(CursorStore(ledger)) as cursors:
        row = cursors.get("restart")
    assert row is not None and row.last_seq == 59  # two batches acknowledged, no more
    second = HttpReceiver(token="t")
    try:  # the restarted forwarder resumes from its cursor
        [report] = forward_once(ledger, [config(tmp_path, url=second.url, **base)])
    finally:
        second.close()
    assert report.error is None and report.last_seq == 199
    delivered = hec_seqs(first.accepted) + hec_seqs(second.accepted)
    assert set(delivered) == set(range(200))  # at least once
    assert min(hec_seqs(second.accepted)) == 60


def test_a_dead_or_slow_receiver_never_slows_the_ledger(ledger: Ledger, tmp_path: Path) -> None:
    ledger.append_many(events(3000))
    stalled = SyslogReceiver(stall=True)
    slow = HttpReceiver(delay=2.0, token="t")
    stop = threading.Event()
    try:
        cfgs = [
            config(tmp_path, name="stalled", type="syslog", host="127.0.0.1",
                   port=stalled.port, batch_size=5000, timeout=1),
            config(tmp_path, name="slow", type="splunk_hec", url=slow.url, token="t",
                   timeout=1, batch_size=100),
            config(tmp_path, name="dead", type="syslog", host="127.0.0.1", port=1, timeout=1),
        ]  # fmt: skip
        jobs = start_forwarders(ledger, cfgs, stop)
        time.sleep(0.3)
        latencies = []
        for i in range(20):
            started = time.perf_counter()
            ledger.append(events(1, start=5000 + i)[0])
            latencies.append(time.perf_counter() - started)
        stop.set()
        jobs.join(10)
        assert not any(t.is_alive() for t in jobs.threads)
    finally:
        stalled.close()
        slow.close()
    assert max(latencies) < 0.5, latencies
    with closing(CursorStore(ledger)) as cursors:
        dead = cursors.get("dead")
    assert dead is not None and dead.failures >= 1 and dead.last_seq == -1


def test_start_at_end_and_filters(ledger: Ledger, tmp_path: Path) -> None:
    ledger.append_many(events(10))
    receiver = HttpReceiver()
    try:
        cfg = config(tmp_path, name="new", type="webhook", url=receiver.url, start_at="end",
                     actions=["guard.*"])  # fmt: skip
        [first] = forward_once(ledger, [cfg])
        assert first.delivered == 0 and first.last_seq == 9
        ledger.append_many(events(10, start=10))
        [second] = forward_once(ledger, [cfg])
    finally:
        receiver.close()
    assert second.delivered == 2 and second.last_seq == 19  # i % 7 == 3: 10 and 17
    [batch] = [json.loads(r.body) for r in receiver.accepted]
    assert [e["seq"] for e in batch["events"]] == [10, 17]


def write_forwarders(data_dir: Path, forwarders: list[dict[str, Any]]) -> Settings:
    settings = Settings.load(data_dir)
    path = data_dir / "settings.json"
    stored = json.loads(path.read_text())
    stored["forwarders"] = forwarders
    path.write_text(json.dumps(stored))
    return settings


def test_server_jobs_follow_the_ledger(tmp_path: Path) -> None:
    from chatledger.audit.textindex import index_for
    from chatledger.platform import Platform

    receiver = HttpReceiver()
    data_dir = tmp_path / "data"
    settings = write_forwarders(
        data_dir, [{"name": "hook", "type": "webhook", "url": receiver.url, "poll_interval": 0.05}]
    )
    platform = Platform.open(settings)
    stop = threading.Event()
    try:
        jobs = start_jobs(platform, stop)
        assert {t.name for t in jobs.threads} == {"audit-index", "audit-forward-hook"}
        platform.ledger.append_many(events(25))
        deadline = time.monotonic() + 10
        size = platform.ledger.size()
        while time.monotonic() < deadline:
            got = {e["seq"] for r in receiver.accepted for e in json.loads(r.body)["events"]}
            if got >= set(range(size)) and index_for(platform.ledger).state().complete:
                break
            time.sleep(0.05)
        assert got >= set(range(size))
        assert index_for(platform.ledger).state().indexed_through >= size
    finally:
        stop.set()
        jobs.join(10)
        platform.close()
        receiver.close()


def test_cli_forward_once_and_status(tmp_path: Path, make_ledger: Any, data_dir: Path) -> None:
    from chatledger.cli.main import app

    receiver = HttpReceiver(token="tok")
    (data_dir / "secrets").mkdir(parents=True, exist_ok=True)
    (data_dir / "hec.token").write_text("tok\n")
    write_forwarders(
        data_dir,
        [{"name": "splunk", "type": "splunk_hec", "url": receiver.url, "token_file": "hec.token"}],
    )
    ledger = make_ledger()
    ledger.append_many(events(15))
    ledger.close()
    runner = CliRunner()
    try:
        result = runner.invoke(
            app, ["audit", "forward", "--once", "--json", "--data-dir", str(data_dir)]
        )
        assert result.exit_code == 0, result.stderr
        [report] = json.loads(result.stdout)["forwarders"]
        assert report["ok"] and report["delivered"] == 15 and report["lag"] == 0
        result = runner.invoke(
            app, ["audit", "forward", "--status", "--json", "--data-dir", str(data_dir)]
        )
        [status] = json.loads(result.stdout)["forwarders"]
        assert status["last_seq"] == 14 and status["delivered"] == 15
    finally:
        receiver.close()
    assert sorted(hec_seqs(receiver.accepted)) == list(range(15))


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "x", "type": "carrier-pigeon"},
        {"name": "x y", "type": "webhook", "url": "http://h"},
        {"name": "x", "type": "syslog"},
        {"name": "x", "type": "splunk_hec", "url": "http://h"},
        {"name": "x", "type": "webhook", "url": "ftp://h"},
        {"name": "x", "type": "webhook", "url": "http://h", "token_env": "CHATLEDGER_NOPE_X"},
        {"name": "x", "type": "syslog", "host": "h", "format": "csv"},
        {"name": "x", "type": "webhook", "url": "http://h", "batch_size": 0},
    ],
)
def test_bad_forwarder_configs_are_refused(tmp_path: Path, bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        ForwarderConfig.from_json(bad, tmp_path)


def test_forwarders_are_read_from_settings(tmp_path: Path) -> None:
    write_forwarders(tmp_path, [
        {"name": "a", "type": "syslog", "host": "siem.example", "tls": True},
        {"name": "b", "type": "webhook", "url": "https://hooks.example/x", "enabled": False},
    ])  # fmt: skip
    a, b = load_forwarders(tmp_path)
    assert (a.port, a.tls, a.format) == (6514, True, "cef")
    assert not b.enabled and b.format == "jsonl"


@pytest.mark.sqlite_only(
    reason="file cursors beside a non-SQLite store; on PostgreSQL cursors are rows: "
    "tests/postgres/test_pg_audit_search.py"
)
def test_cursor_files_when_the_store_is_not_sqlite(ledger: Ledger, tmp_path: Path) -> None:
    cursors = CursorStore(ledger, tmp_path)
    cursors.path = None  # as on PostgreSQL: cursors are files in the data directory
    assert cursors.get("x") is None
    cursors.advance("x", 10, 5)
    cursors.failed("x", "receiver down")
    cursors.advance("x", 7, 0)  # never backwards
    row = cursors.get("x")
    assert row is not None and (row.last_seq, row.delivered, row.failures) == (10, 5, 0)
    assert row.last_error == "receiver down"
    assert [r.name for r in cursors.all()] == ["x"]
    assert (tmp_path / "forwarders" / "x.cursor.json").exists()
