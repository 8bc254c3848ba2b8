"""The ``chatledger ledger`` commands of CONTRACT.md, run as a user runs them."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatledger.cli.main import app
from chatledger.config import Settings
from chatledger.runtime import open_store

runner = CliRunner()

EVENTS = "\n".join(
    json.dumps(e)
    for e in [
        {
            "action": "document.upload",
            "actor": {"type": "user", "id": "u1", "role": "admin"},
            "entity": {"type": "document", "id": "d1"},
            "payload": {"name": "faq.pdf"},
            "subject": "user-1",
        },
        {
            "action": "custom.billing.sync",
            "actor": {"type": "service", "id": "erp"},
            "entity": {"type": "invoice", "id": "i-9"},
            "outcome": "failure",
        },
        {
            "action": "message.user",
            "actor": {"type": "anonymous", "id": "v-1"},
            "entity": {"type": "message", "id": "m1"},
            "subject": "visitor-1",
            "payload": {"text": "Où est ma commande ? 📦"},
        },
    ]
)


def cli(data_dir: Path, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(
        app,
        [*args, "--data-dir", str(data_dir)]
        if args[0] == "ledger" and args[1] != "verify-bundle"
        else list(args),
        input=input,
    )
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def filled(data_dir: Path) -> Path:
    code, out, err = cli(data_dir, "ledger", "append", input=EVENTS)
    assert code == 0, err
    assert [line.split("\t")[0] for line in out.splitlines()] == ["0", "1", "2"]
    return data_dir


def test_append_json_output(data_dir: Path) -> None:
    code, out, _ = cli(data_dir, "ledger", "append", "--json", input=EVENTS)
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["seq"] for r in rows] == [0, 1, 2]
    assert all(len(r["leaf_hash"]) == 64 for r in rows)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("not json", "line 2: not valid JSON"),
        (
            '{"action": "nope.nope", "actor": {"type": "user", "id": "u"}, '
            '"entity": {"type": "x", "id": "1"}}',
            "line 2: unknown action",
        ),
        (
            '{"actor": {"type": "user", "id": "u"}, "entity": {"type": "x", "id": "1"}}',
            "line 2: event is missing 'action'",
        ),
        ('["a list"]', "line 2: an event must be a JSON object"),
    ],
)
def test_append_refuses_invalid_lines_and_writes_nothing(
    data_dir: Path, line: str, reason: str
) -> None:
    good = EVENTS.splitlines()[0]
    code, _, err = cli(data_dir, "ledger", "append", input=f"{good}\n{line}\n")
    assert code == 2
    assert reason in err
    assert "Traceback" not in err
    assert not (data_dir / "settings.json").exists()  # nothing was set up, nothing written


def test_a_mistyped_data_directory_is_refused_not_created(filled: Path, tmp_path: Path) -> None:
    """Reading commands on a folder with no ledger fail; they never make a new, empty
    ledger that verifies, nor print a fresh key an auditor might pin."""
    typo = tmp_path / "chatledger-dmeo"
    for args in (("ledger", "verify"), ("ledger", "public-key"), ("ledger", "erase-subject", "x")):
        code, out, err = cli(typo, *args)
        assert code == 2, (args, out, err)
        assert "no ChatLedger data in" in err and err.count("\n") == 1
        assert not typo.exists()
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    code, _, err = cli(a_file, "ledger", "verify")
    assert code == 2 and "is a file, not a folder" in err


def test_settings_of_the_wrong_type_are_refused(filled: Path) -> None:
    path = filled / "settings.json"
    settings = json.loads(path.read_text())
    settings["checkpoint_every"] = "x"
    path.write_text(json.dumps(settings))
    code, _, err = cli(filled, "ledger", "verify")
    assert code == 2
    assert "checkpoint_every must be an integer" in err and "internal error" not in err


def test_a_database_restored_without_its_secrets_gets_no_new_keys(filled: Path) -> None:
    """New keys would make every entry look forged and sign with a key nobody knows."""

    def entries() -> int:
        store = open_store(Settings.load(filled))
        try:
            return store.size()
        finally:
            store.close()

    shutil.rmtree(filled / "secrets")
    code, _, err = cli(filled, "ledger", "public-key")
    assert code == 1
    assert "missing from" in err and "restore the secrets directory" in err
    assert not (filled / "secrets" / "log.key").exists()
    assert not (filled / "secrets" / "master.key").exists()
    assert entries() == 3


def test_append_refuses_invalid_utf8(data_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(
        b'{"action": "custom.x", "actor": {"type": "user", "id": "\xff"}, '
        b'"entity": {"type": "x", "id": "1"}}\n'
    )
    with bad.open("rb") as stdin:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "chatledger.cli",
                "ledger",
                "append",
                "--data-dir",
                str(data_dir),
            ],
            stdin=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
    assert proc.returncode == 2
    assert "line 1" in proc.stderr and "Traceback" not in proc.stderr


def test_verify_checkpoint_prove_export_verify_bundle(filled: Path, tmp_path: Path) -> None:
    code, out, _ = cli(filled, "ledger", "verify")
    assert code == 0 and out.startswith("ok: 3 entries verified")
    cp_file = tmp_path / "cp.note"
    code, _, _ = cli(filled, "ledger", "checkpoint", "--out", str(cp_file))
    assert code == 0
    note = cp_file.read_text()
    code, key, _ = cli(filled, "ledger", "public-key")
    key = key.strip()
    assert key.count("+") >= 2 and note.splitlines()[-1].startswith("\u2014 " + key.split("+")[0])
    code, out, _ = cli(filled, "ledger", "prove", "1")
    proof = json.loads(out)
    assert set(proof) >= {"leaf_index", "tree_size", "leaf_hash", "hashes", "root", "checkpoint"}
    assert proof["leaf_index"] == 1
    code, out, _ = cli(filled, "ledger", "verify", "--checkpoint", str(cp_file))
    assert code == 0
    bundle = tmp_path / "b.zip"
    code, out, _ = cli(filled, "ledger", "export", "--out", str(bundle), "--from", "1", "--to", "2")
    assert code == 0 and "entries 1..2" in out
    code, out, err = cli(filled, "ledger", "verify-bundle", str(bundle), "--key", key)
    assert code == 0, err
    key_file = tmp_path / "log.pub"
    key_file.write_text(key + "\n")
    code, out, err = cli(
        filled, "ledger", "verify-bundle", str(bundle), "--key", str(key_file), "--json"
    )
    assert code == 0 and json.loads(out)["ok"] is True


@pytest.mark.sqlite_only(
    reason="edits the SQLite file; tampering on PostgreSQL: tests/postgres/test_pg_tamper.py"
)
def test_verify_names_the_first_bad_entry(filled: Path) -> None:
    db = filled / "chatledger.db"
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER ledger_entries_no_update")
    conn.execute(
        "UPDATE ledger_entries SET body = replace(body, 'failure', 'success') WHERE seq = 1"
    )
    conn.commit()
    conn.close()
    code, _, err = cli(filled, "ledger", "verify")
    assert code == 3, err
    assert "seq 1" in err and "leaf_hash_mismatch" in err


def test_erase_subject(filled: Path) -> None:
    code, out, err = cli(
        filled, "ledger", "erase-subject", "visitor-1", "--reason", "ticket 12", "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["payloads_erased"] == 1
    code, out, _ = cli(filled, "ledger", "verify", "--json")
    assert code == 0 and json.loads(out)["payloads_erased"] == 1


def test_errors_are_one_line_without_traceback(filled: Path, tmp_path: Path) -> None:
    for args in (
        ["ledger", "prove", "999"],
        ["ledger", "verify-bundle", str(tmp_path / "missing.zip")],
        ["ledger", "export", "--out", str(tmp_path / "x.zip"), "--from", "7"],
        ["ledger", "verify", "--checkpoint", str(tmp_path / "nope.note")],
    ):
        code, _, err = cli(filled, *args)
        assert code != 0, args
        assert err.startswith("error: ") and "Traceback" not in err, (args, err)


def test_console_script_runs() -> None:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "chatledger"), "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and "ledger" in proc.stdout


@pytest.mark.sqlite_only(
    reason="copies the SQLite file into another data directory; on PostgreSQL the same "
    "mismatch is another deployment's data directory given with --database"
)
def test_a_database_opened_with_another_data_directory(filled: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    # another deployment, with keys of its own
    code, _, err = cli(other, "ledger", "append", input=EVENTS.splitlines()[1])
    assert code == 0, err
    shutil.copy(filled / "chatledger.db", other / "chatledger.db")
    code, _, err = cli(other, "ledger", "export", "--out", str(tmp_path / "x.zip"))
    assert code == 3, err
    assert "does not unwrap with this data directory's master secret" in err
    assert "Traceback" not in err and "internal error" not in err
    code, out, _ = cli(other, "ledger", "verify", "--json")
    reasons = {p["reason"] for p in json.loads(out)["problems"]}
    assert code == 3 and {"entry_forged", "payload_key_unreadable"} <= reasons


def test_missing_input_files_are_invalid_input(filled: Path, tmp_path: Path) -> None:
    """A file named on the command line that is not there is the caller's mistake (exit 2),
    not a failed verification (3) nor a failure of ours (1)."""
    bundle = tmp_path / "b.zip"
    assert cli(filled, "ledger", "export", "--out", str(bundle))[0] == 0
    code, _, err = cli(filled, "ledger", "verify-bundle", str(bundle), "--key", "/no/such.pub")
    assert code == 2 and "no such file, and not a verifier key" in err
    code, _, err = cli(filled, "ledger", "verify", "--checkpoint", str(tmp_path / "none.txt"))
    assert code == 2 and err.count("\n") == 1


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("chatledger ")
