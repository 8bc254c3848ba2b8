"""Every export format on every action of the vocabulary, checked with parsers written here
from the specifications (not with our formatters): CEF and LEEF 2.0 strictly, OCSF 1.8 class
requirements, ECS allowed values, Splunk HEC event shape, RFC 4180 CSV, and JSON Lines whose
entries are the ledger's bytes exactly."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

import orjson
import pytest

from chatledger.audit.formats import ExportRecord, FormatContext, get_format
from chatledger.audit.search import Filters, prepare_export
from chatledger.events import ACTIONS, Actor, Entity, Event
from chatledger.ledger.service import Ledger

TRICKY = "a|b=c\\d e"  # pipe, equal sign, backslash, space


def vocabulary_events() -> list[Event]:
    events: list[Event] = []
    for action in sorted(ACTIONS):
        attributes: dict[str, Any] = {
            "chatbot_id": "bot-1",
            "conversation_id": "conv-1",
            "reason": "x=1|y\\z",
        }
        if action in ("model.call", "message.answer"):
            attributes.update(
                {
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-x",
                    "gen_ai.response.model": "gpt-x-2026",
                    "gen_ai.usage.input_tokens": 812,
                    "gen_ai.usage.output_tokens": 96,
                }
            )
        if action.startswith("guard."):
            attributes.update({"detector": "heuristic", "score": 0.9, "severity": "high"})
        events.append(
            Event(
                action,
                Actor("user", TRICKY, "admin"),
                Entity("thing", TRICKY),
                "denied" if action == "access.denied" else "success",
                subject="visitor-1",
                attributes=attributes,
                payload={"text": "personal content"} if action.startswith("message.") else None,
            )
        )
    events.append(
        Event("custom.app_event", Actor("service", "etl"), Entity("job", "j1"), attributes={})
    )
    return events


@pytest.fixture
def exported(ledger: Ledger) -> Any:
    ledger.append_many(vocabulary_events())
    ledger.erase_subject("visitor-1", Actor("user", "dpo", "operator"))  # payloads now erased

    def run(name: str, ctx: FormatContext | None = None) -> tuple[str, list[ExportRecord]]:
        fmt = get_format(name)
        exporter = prepare_export(
            ledger, Filters.parse(), fmt, ctx or FormatContext(origin=ledger.origin)
        )
        text = b"".join(exporter.chunks()).decode()
        from chatledger.audit.search import records

        rows = ledger.store.query("SELECT seq, body FROM ledger_entries ORDER BY seq")
        return text, records(ledger, [(int(s), bytes(b)) for s, b in rows])

    return run


# -- CEF ----------------------------------------------------------------------------------------

_CEF_KEY = re.compile(r"[A-Za-z0-9_]+")


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """A strict CEF parser: seven pipe-separated header fields where only ``\\|`` and
    ``\\\\`` are escapes, then ``key=value`` pairs separated by spaces where only ``\\=``,
    ``\\\\``, ``\\n`` and ``\\r`` are escapes and an unescaped ``=`` ends a key."""
    assert line.startswith("CEF:"), line[:20]
    assert "\n" not in line and "\r" not in line
    fields: list[str] = []
    current: list[str] = []
    i = 0
    while len(fields) < 7:
        ch = line[i]
        if ch == "\\":
            nxt = line[i + 1]
            assert nxt in "|\\", f"invalid header escape \\{nxt}"
            current.append(nxt)
            i += 2
        elif ch == "|":
            fields.append("".join(current))
            current = []
            i += 1
        else:
            current.append(ch)
            i += 1
    ext = line[i:]
    equals = []
    j = 0
    while j < len(ext):
        if ext[j] == "\\":
            j += 2
            continue
        if ext[j] == "=":
            equals.append(j)
        j += 1
    keys: list[tuple[int, int]] = []  # (key start, '=' position)
    for pos in equals:
        start = pos
        while start > 0 and _CEF_KEY.fullmatch(ext[start - 1]):
            start -= 1
        assert start < pos, (
            f"an unescaped '=' without a key at {pos}: {ext[max(0, pos - 20) : pos + 5]!r}"
        )
        assert start == 0 or ext[start - 1] == " ", (
            f"key not preceded by a space: {ext[start - 5 : pos]!r}"
        )
        keys.append((start, pos))
    out: dict[str, str] = {}
    for n, (start, pos) in enumerate(keys):
        end = keys[n + 1][0] - 1 if n + 1 < len(keys) else len(ext)
        raw = ext[pos + 1 : end]
        value: list[str] = []
        k = 0
        while k < len(raw):
            if raw[k] == "\\":
                nxt = raw[k + 1]
                assert nxt in "=\\nr", f"invalid extension escape \\{nxt}"
                value.append({"=": "=", "\\": "\\", "n": "\n", "r": "\r"}[nxt])
                k += 2
            else:
                value.append(raw[k])
                k += 1
        key = ext[start:pos]
        assert key not in out, f"duplicate key {key}"
        out[key] = "".join(value)
    return fields, out


def test_cef_is_valid_and_round_trips(exported: Any) -> None:
    text, recs = exported("cef")
    lines = text.splitlines()
    assert len(lines) == len(recs)
    for line, rec in zip(lines, recs, strict=True):
        header, ext = parse_cef(line)
        assert header[:4] == ["CEF:0", "ChatLedger", "ChatLedger", "0.1.0"]
        assert header[4] == rec.entry["action"]
        assert 0 <= int(header[6]) <= 10
        assert ext["suid"] == rec.entry["actor"]["id"]
        assert ext["cs2Label"] == "entityId" and ext["cs2"] == rec.entry["entity"]["id"]
        assert ext["cn1"] == str(rec.seq)
        assert json.loads(ext["cs6"]) == rec.entry["attributes"]
        assert ext["cs5"] == rec.payload_status
        assert int(ext["rt"]) > 1_600_000_000_000
        for n in range(1, 7):  # a label only with its value
            assert (f"cs{n}Label" in ext) == (f"cs{n}" in ext), line
    assert any("cs4" not in parse_cef(line)[1] for line in lines)  # events of no conversation
    statuses = {r.payload_status for r in recs}
    assert statuses == {"erased", "none"}


def test_cef_escapes_header_pipes_and_extension_line_breaks(exported: Any) -> None:
    ctx = FormatContext(origin="line1\nline2\r=x\\|y", product_version="1.0|rc\\1")
    text, _ = exported("cef", ctx)
    header, ext = parse_cef(text.splitlines()[0])
    assert header[3] == "1.0|rc\\1"
    assert ext["deviceExternalId"] == "line1\nline2\r=x\\|y"


# -- LEEF 2.0 ----------------------------------------------------------------------------------

_LEEF_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def parse_leef(line: str) -> tuple[list[str], dict[str, str]]:
    """A strict LEEF 2.0 parser: ``LEEF:2.0|Vendor|Product|Version|EventID|Delimiter|`` then
    attributes split on the delimiter (a character, or x/0x and 1-4 hex digits), each
    ``key=value`` split at its first ``=``; no escapes exist, so no field may hold the
    delimiter or a line break."""
    assert "\n" not in line and "\r" not in line
    parts = line.split("|", 6)
    assert len(parts) == 7, "a LEEF 2.0 header has six fields"
    assert parts[0] == "LEEF:2.0"
    spec = parts[5]
    hexed = re.fullmatch(r"(?:0x|x)([0-9A-Fa-f]{1,4})", spec)
    delimiter = chr(int(hexed.group(1), 16)) if hexed else spec
    assert len(delimiter) == 1
    for field in parts[1:5]:
        assert field and delimiter not in field
    attrs: dict[str, str] = {}
    for pair in parts[6].split(delimiter):
        key, sep, value = pair.partition("=")
        assert sep == "=", f"attribute without '=': {pair!r}"
        assert _LEEF_KEY.fullmatch(key), f"bad key {key!r}"
        assert key not in attrs, f"duplicate key {key}"
        attrs[key] = value
    return parts[:6], attrs


def test_leef_is_valid_and_round_trips(exported: Any) -> None:
    text, recs = exported("leef")
    lines = text.splitlines()
    assert len(lines) == len(recs)
    for line, rec in zip(lines, recs, strict=True):
        header, attrs = parse_leef(line)
        assert header == [
            "LEEF:2.0",
            "ChatLedger",
            "ChatLedger",
            "0.1.0",
            rec.entry["action"],
            "x09",
        ]
        assert attrs["usrName"] == rec.entry["actor"]["id"]
        assert attrs["entityId"] == TRICKY if rec.entry["entity"]["id"] == TRICKY else True
        assert attrs["seq"] == str(rec.seq)
        assert json.loads(attrs["attributes"]) == rec.entry["attributes"]
        assert attrs["devTimeFormat"] == "yyyy-MM-dd'T'HH:mm:ss.SSSX"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", attrs["devTime"])
        assert attrs["devTime"][:23] == rec.entry["ts"][:23]
        assert 1 <= int(attrs["sev"]) <= 10


def test_leef_values_never_hold_the_delimiter_or_line_breaks(exported: Any) -> None:
    text, _ = exported("leef", FormatContext(origin="a\tb\nc\rd"))
    _, attrs = parse_leef(text.splitlines()[0])
    assert attrs["origin"] == "a b c d"


# -- OCSF 1.8 ----------------------------------------------------------------------------------

CLASS_REQUIRES = {
    3001: ["user"],
    3002: ["user"],
    3004: ["entity"],
    6001: ["web_resources"],
    6003: ["actor", "api", "src_endpoint"],
    2004: ["finding_info"],
}
CATEGORY = {3001: 3, 3002: 3, 3004: 3, 6001: 6, 6003: 6, 2004: 2}


def test_ocsf_classes_and_required_attributes(exported: Any) -> None:
    text, recs = exported("ocsf")
    events = [json.loads(line) for line in text.splitlines()]
    by_action = {e["metadata"]["event_code"]: e for e in events}
    for event, rec in zip(events, recs, strict=True):
        for key in (
            "class_uid",
            "category_uid",
            "activity_id",
            "type_uid",
            "time",
            "severity_id",
            "metadata",
        ):
            assert key in event, (rec.entry["action"], key)
        cls = event["class_uid"]
        assert event["category_uid"] == CATEGORY[cls]
        assert event["type_uid"] == cls * 100 + event["activity_id"]
        assert event["metadata"]["version"] == "1.8.0"
        assert event["metadata"]["product"]["vendor_name"] and event["metadata"]["product"]["name"]
        assert event["metadata"]["uid"] == rec.entry["id"]
        assert isinstance(event["time"], int) and 1 <= event["severity_id"] <= 6
        for key in CLASS_REQUIRES[cls]:
            assert event.get(key), (rec.entry["action"], key)
        if event["activity_id"] == 99:
            assert event["activity_name"] and event["activity_name"] != "Other"
        if cls == 3002:
            assert event.get("service") or event.get("dst_endpoint")
        if cls == 6003:
            assert event["api"]["operation"] == rec.entry["action"]
        if cls == 2004:
            assert event["finding_info"]["uid"] and event["status_id"] == 1
        assert event["unmapped"]["chatledger"]["seq"] == rec.seq
        assert event["unmapped"]["chatledger"]["entry"] == rec.entry
    classes = {a: by_action[a]["class_uid"] for a in by_action}
    assert classes["auth.login"] == 3002 and classes["auth.login_failed"] == 3002
    assert classes["user.create"] == 3001 and classes["apikey.revoke"] == 3001
    assert classes["membership.change"] == 3001
    assert classes["chatbot.update"] == 3004 and classes["document.delete"] == 3004
    assert classes["settings.update"] == 3004 and classes["retention.update"] == 3004
    assert classes["conversation.view"] == 6001 and classes["audit.export"] == 6001
    assert classes["guard.injection_detected"] == 2004 and classes["access.denied"] == 2004
    assert classes["ledger.tamper_detected"] == 2004
    assert classes["model.call"] == 6003 and classes["message.user"] == 6003
    assert by_action["ledger.tamper_detected"]["severity_id"] == 5
    assert by_action["access.denied"]["finding_info"]["types"] == ["access.denied"]
    call = by_action["model.call"]
    assert "ai_operation" in call["metadata"]["profiles"]
    assert call["ai_model"] == {"name": "gpt-x-2026", "ai_provider": "openai"}
    context = call["message_context"]
    assert (context["prompt_tokens"], context["completion_tokens"], context["total_tokens"]) == (
        812,
        96,
        908,
    )
    assert context["uid"] == "conv-1" and context["ai_role_id"] == 2
    assert by_action["message.user"]["message_context"]["ai_role"] == "User"
    assert "personal content" not in text


# -- ECS, Splunk HEC, CSV, JSON Lines ----------------------------------------------------------

ECS_CATEGORIES = {
    "api", "authentication", "configuration", "database", "driver", "email", "file", "host",
    "iam", "intrusion_detection", "library", "malware", "network", "package", "process",
    "registry", "session", "threat", "vulnerability", "web",
}  # fmt: skip
ECS_TYPES = {
    "access", "admin", "allowed", "change", "connection", "creation", "deletion", "denied",
    "end", "error", "group", "indicator", "info", "installation", "protocol", "start", "user",
}  # fmt: skip


def test_ecs_documents(exported: Any) -> None:
    text, recs = exported("ecs")
    for line, rec in zip(text.splitlines(), recs, strict=True):
        doc = json.loads(line)
        assert doc["@timestamp"] == rec.entry["ts"]
        assert doc["ecs"]["version"]
        event = doc["event"]
        assert event["action"] == rec.entry["action"] and event["sequence"] == rec.seq
        assert set(event.get("category", [])) <= ECS_CATEGORIES
        assert set(event["type"]) <= ECS_TYPES
        assert event["outcome"] in ("success", "failure", "unknown")
        assert event["kind"] in ("event", "alert")
        assert doc["user"]["id"] == rec.entry["actor"]["id"]
        if rec.entry["action"] == "model.call":
            assert doc["gen_ai"]["usage"]["input_tokens"] == 812


def test_splunk_hec_events(exported: Any) -> None:
    text, recs = exported("splunk_hec", FormatContext(origin="o", host="h1", index="audit"))
    for line, rec in zip(text.splitlines(), recs, strict=True):
        event = json.loads(line)
        assert set(event) >= {"time", "host", "source", "sourcetype", "event"}
        assert event["host"] == "h1" and event["index"] == "audit"
        assert abs(event["time"] - int(event["time"])) < 1
        assert event["event"]["entry"] == rec.entry


def test_csv_round_trips(exported: Any) -> None:
    text, recs = exported("csv")
    assert "\r\n" in text
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(rows) == len(recs)
    for row, rec in zip(rows, recs, strict=True):
        assert row["seq"] == str(rec.seq)
        assert row["actor_id"] == TRICKY or rec.entry["actor"]["id"] != TRICKY
        assert json.loads(row["attributes"]) == rec.entry["attributes"]
        assert row["payload_status"] == rec.payload_status


def test_jsonl_carries_the_hashed_bytes(exported: Any, ledger: Ledger) -> None:
    from chatledger.ledger import merkle

    text, recs = exported("jsonl")
    for line, rec in zip(text.splitlines(), recs, strict=True):
        parsed = json.loads(line)
        assert parsed["seq"] == rec.seq and parsed["payload_status"] == rec.payload_status
        start = line.index('"entry":') + len('"entry":')
        body = line[start : start + len(rec.body)].encode()
        assert body == rec.body
        leaf = ledger.store.query("SELECT leaf_hash FROM ledger_entries WHERE seq = ?", (rec.seq,))
        assert merkle.leaf_hash(body) == bytes(leaf[0][0])


TRICKY_TEXT = 'q"uo\\te\n\t\u00e9\u2028\U0001f600=|'  # JSON, CEF and LEEF specials


def tricky_events() -> list[Event]:
    """Entries whose values need escaping in every format, some of unexpected types."""
    ident = 'q"uo\\te\u00e9\U0001f600=|'
    events = []
    for action in ("model.call", "auth.login", "user.update", "chatbot.update", "audit.search"):
        for outcome in ("success", "flagged", "failure"):
            events.append(
                Event(
                    action,
                    Actor("user", ident, "owner"),
                    Entity("thing", ident),
                    outcome,
                    subject=ident,
                    attributes={
                        "conversation_id": TRICKY_TEXT,
                        "chatbot_id": 7,
                        "channel": TRICKY_TEXT,
                        "gen_ai.request.model": TRICKY_TEXT,
                        "gen_ai.usage.input_tokens": 5,
                        "gen_ai.usage.output_tokens": True,
                        "severity": "HIGH",
                        "method": TRICKY_TEXT,
                        "nested": [1, {"a": None, "b": -0.5}],
                    },
                )
            )
    events.append(
        Event("guard.anomaly", Actor("system", "guard"), Entity("message", "m1"), "blocked",
              attributes={"detector": TRICKY_TEXT, "detector_version": 2.5, "score": 0.875,
                          "kind": TRICKY_TEXT})
    )  # fmt: skip
    return events


def test_ocsf_lines_escape_every_value(ledger: Ledger) -> None:
    from chatledger.audit.formats import ocsf
    from chatledger.audit.search import records

    ledger.append_many(tricky_events())
    rows = ledger.store.query("SELECT seq, body FROM ledger_entries ORDER BY seq")
    recs = records(ledger, [(int(s), bytes(b)) for s, b in rows])
    ctx = FormatContext(origin='o"1', product_version='1\\"2')
    for rec in recs:
        line = ocsf.line(rec, ctx)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        event = json.loads(line)
        assert event == orjson.loads(orjson.dumps(ocsf.event(rec, ctx)))  # the same, as a dict
        entry, attrs = rec.entry, rec.entry["attributes"]
        assert event["unmapped"]["chatledger"]["entry"] == entry
        assert event["metadata"]["log_name"] == 'o"1'
        assert event["metadata"]["product"]["version"] == '1\\"2'
        assert event["actor"]["user"]["uid"] == entry["actor"]["id"]
        if event["class_uid"] == 6003:
            assert event["metadata"]["correlation_uid"] == TRICKY_TEXT
            assert event["src_endpoint"]["name"] == TRICKY_TEXT
            assert event["ai_model"] == {"name": TRICKY_TEXT, "ai_provider": "unknown"}
            context = event["message_context"]
            assert context["uid"] == TRICKY_TEXT and context["prompt_tokens"] == 5
            assert "completion_tokens" not in context  # a boolean is not a count
            assert event["resources"][1] == {"uid": TRICKY_TEXT, "type": "conversation"}
            assert len(event["resources"]) == 2  # a chatbot id that is not a string is left out
        if event["class_uid"] == 3002:
            assert event["auth_protocol"] == TRICKY_TEXT
        if event["class_uid"] == 2004:
            assert event["finding_info"]["analytic"] == {
                "name": TRICKY_TEXT, "type_id": 1, "type": "Rule", "version": "2.5"
            }  # fmt: skip
            assert event["confidence_score"] == 88
        if entry["outcome"] == "failure":
            assert (event["status_id"], event["status_detail"]) == (2, "failure")
        assert event["severity_id"] == (4 if "severity" in attrs else 3)  # HIGH; guard.anomaly


@pytest.mark.parametrize("name", ["jsonl", "csv", "ocsf", "cef", "leef", "ecs", "splunk_hec"])
def test_batch_rendering_equals_rendering_each_record(ledger: Ledger, name: str) -> None:
    from chatledger.audit.search import records

    ledger.append_many(vocabulary_events() + tricky_events())
    ledger.erase_subject("visitor-1", Actor("user", "dpo", "operator"))
    rows = ledger.store.query("SELECT seq, body FROM ledger_entries ORDER BY seq")
    recs = records(ledger, [(int(s), bytes(b)) for s, b in rows])
    assert any(r.erasure_seq is not None for r in recs)
    fmt = get_format(name)
    ctx = FormatContext(origin="o", host="h", index="i")
    one_by_one = "".join(fmt.render(r, ctx) + fmt.line_end for r in recs).encode()
    assert fmt.lines(recs, ctx) == one_by_one
    assert fmt.lines([], ctx) == b""


@pytest.mark.sqlite_only(
    reason="workers read seq ranges from the SQLite file; PostgreSQL exports in one process"
)
def test_parallel_export_equals_the_serial_one(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chatledger.audit import search as search_module

    ledger.append_many(vocabulary_events() * 3 + tricky_events())
    ledger.erase_subject("visitor-1", Actor("user", "dpo", "operator"))
    monkeypatch.setattr(search_module, "PARALLEL_CHUNK", 16)
    monkeypatch.setattr(search_module, "PARALLEL_MIN", 0)
    monkeypatch.setattr(search_module, "auto_workers", lambda: 2)
    parallel = search_module.Export._parallel
    calls: list[int] = []

    def spy(self: Any, *args: Any) -> Any:
        calls.append(1)
        return parallel(self, *args)

    monkeypatch.setattr(search_module.Export, "_parallel", spy)
    cases = (
        ("ocsf", Filters.parse()),
        ("cef", Filters.parse(category="access")),
        ("csv", Filters.parse(action="message.*")),
    )
    for name, filters in cases:
        outputs = []
        for workers in (1, None):  # None: the default, one per core (here 2)
            exporter = prepare_export(
                ledger, filters, get_format(name), FormatContext(origin=ledger.origin, host="h")
            )
            data = b"".join(exporter.chunks(workers=workers))
            outputs.append((data, exporter.count, exporter.last_seq))
        assert outputs[0] == outputs[1] and outputs[0][1] > 0, name
    assert len(calls) == len(cases)  # the default did render in worker processes
