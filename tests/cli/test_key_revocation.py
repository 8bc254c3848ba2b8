"""``keys revoke`` takes the key id or the whole key, checks a whole key's secret, and never
prints, records or logs the secret."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatledger.cli.main import app
from chatledger.config import Settings
from chatledger.errors import ChatLedgerError, Forbidden, InvalidInput, NotFound, Unauthenticated
from chatledger.identity.principal import system_principal
from chatledger.platform import Platform

runner = CliRunner()


@pytest.fixture(autouse=True)
def _initialised(data_dir: Path) -> None:
    """A data directory that exists (the CLI need not set one up)."""
    Settings.load(data_dir)


def run(data_dir: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [*args, "--data-dir", str(data_dir)])
    return result.exit_code, result.stdout, result.stderr


def create_key(data_dir: Path, role: str = "auditor") -> dict[str, str]:
    code, out, err = run(data_dir, "keys", "create", "--role", role, "--json")
    assert code == 0, err
    key: dict[str, str] = json.loads(out)
    return key


def secret_of(token: str) -> str:
    return token.split("_", 2)[2]


def ledger_text(data_dir: Path) -> str:
    """Every stored event, as text: the secret must not be in any of them."""
    platform = Platform.open(Settings.load(data_dir))
    try:
        ledger = platform.ledger
        return "\n".join(
            ledger.entry(seq).body.decode("utf-8", "replace") for seq in range(ledger.size())
        )
    finally:
        platform.close()


def test_split_key_reference() -> None:
    from chatledger.identity.service import split_key_reference

    assert split_key_reference("clk_882ac311edd83fed") == ("882ac311edd83fed", None)
    assert split_key_reference("882ac311edd83fed") == ("882ac311edd83fed", None)
    whole = "clk_882ac311edd83fed_IqBGdWwvKSzoIzC9cFUmzOuZgMIX8mhFRwtwox9QxEc"
    assert split_key_reference(whole) == (
        "882ac311edd83fed",
        "IqBGdWwvKSzoIzC9cFUmzOuZgMIX8mhFRwtwox9QxEc",
    )
    for bad in ("", "clk_", "clk_short_IqBGdWwvKSzoIzC9cF", "clk_882ac311edd83fed_", "nope"):
        with pytest.raises(InvalidInput) as caught:
            split_key_reference(bad)
        assert "IqBG" not in caught.value.message


@pytest.mark.parametrize("form", ["whole", "prefixed_id", "bare_id"])
def test_revoke_by_id_or_whole_key(
    data_dir: Path, form: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = create_key(data_dir)
    given = {"whole": key["key"], "prefixed_id": f"clk_{key['id']}", "bare_id": key["id"]}[form]
    caplog.set_level(logging.DEBUG)
    code, out, err = run(data_dir, "keys", "revoke", given)
    assert code == 0, err
    assert out.strip().startswith(f"revoked clk_{key['id']} (auditor, workspace ")
    assert "None" not in out
    assert secret_of(key["key"]) not in out + err + caplog.text
    # revoked: the key no longer authenticates
    platform = Platform.open(Settings.load(data_dir))
    try:
        assert platform.identity.api_key(key["id"]).revoked_at
        with pytest.raises(Unauthenticated):
            platform.identity.authenticate_key(key["key"])
    finally:
        platform.close()
    # revoking again is harmless, in JSON too
    code, out, err = run(data_dir, "keys", "revoke", given, "--json")
    assert code == 0, err
    assert json.loads(out)["revoked_at"]
    assert secret_of(key["key"]) not in out + err + caplog.text + ledger_text(data_dir)


def test_a_wrong_secret_revokes_nothing_and_is_never_echoed(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = create_key(data_dir)
    other = create_key(data_dir)
    caplog.set_level(logging.DEBUG)
    wrong = f"clk_{key['id']}_{secret_of(other['key'])}"
    code, out, err = run(data_dir, "keys", "revoke", wrong)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert f"clk_{key['id']}" in err and "nothing was revoked" in err
    unknown = "clk_0123456789abcdef_IqBGdWwvKSzoIzC9cFUmzOuZgMIX8mhFRwtwox9QxEc"
    code, out, err2 = run(data_dir, "keys", "revoke", unknown)
    assert code == 1 and "no API key clk_0123456789abcdef" in err2
    malformed = "clk_882ac_IqBGdWwvKSzoIzC9cFUmzOuZgMIX8mhFRwtwox9QxEc"
    code, out, err3 = run(data_dir, "keys", "revoke", malformed)
    assert code == 2 and "not an API key id" in err3
    everything = err + err2 + err3 + caplog.text + ledger_text(data_dir)
    for secret in (secret_of(other["key"]), "IqBGdWwvKSzoIzC9cFUmzOuZgMIX8mhFRwtwox9QxEc"):
        assert secret not in everything
    platform = Platform.open(Settings.load(data_dir))
    try:
        assert platform.identity.api_key(key["id"]).revoked_at is None
        platform.identity.authenticate_key(key["key"])
    finally:
        platform.close()


def test_service_never_puts_the_secret_in_errors(data_dir: Path) -> None:
    key = create_key(data_dir)
    secret = secret_of(key["key"])
    platform = Platform.open(Settings.load(data_dir))
    try:
        ws = platform.identity.api_key(key["id"]).workspace_id
        viewer, _ = platform.identity.create_api_key(system_principal(ws), role="viewer")
        as_viewer = platform.identity.authenticate_key(viewer)
        errors: list[ChatLedgerError] = []
        with pytest.raises(Forbidden) as refused:
            platform.identity.revoke_api_key(as_viewer, key["key"])
        errors.append(refused.value)
        other_ws = platform.identity.create_workspace("Other", system_principal(ws).actor)
        admin_other, _ = platform.identity.create_api_key(system_principal(other_ws), role="admin")
        with pytest.raises(NotFound) as caught:
            platform.identity.revoke_api_key(
                platform.identity.authenticate_key(admin_other), key["key"]
            )
        errors.append(caught.value)
        for error in errors:
            assert secret not in error.diagnostics() + json.dumps(error.to_dict(), default=str)
        with pytest.raises(NotFound) as missing:
            platform.identity.api_key(key["key"])
        assert secret not in missing.value.message
        assert platform.identity.api_key(key["id"]).revoked_at is None
    finally:
        platform.close()
    assert secret not in ledger_text(data_dir)
