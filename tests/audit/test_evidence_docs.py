"""The standard-tools walkthrough of docs/evidence.md, run as written against a fresh pack, and
against a tampered one (which it must reject)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from chatledger.audit.evidence import Custodian, EvidenceScope, build_evidence_pack
from chatledger.config import Settings
from chatledger.events import Actor
from chatledger.platform import Platform
from tests.privacy.seed import seed

DOC = Path(__file__).resolve().parents[2] / "docs" / "evidence.md"
TOOLS = ("bash", "unzip", "sha256sum", "openssl", "base64", "awk")


def walkthrough() -> str:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Checking a pack with standard tools", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 1
    return blocks[0]


@pytest.mark.skipif(
    any(shutil.which(t) is None for t in TOOLS), reason="standard tools are not installed"
)
def test_the_documented_commands_verify_a_pack(tmp_path: Path) -> None:
    platform = Platform.open(Settings.load(tmp_path / "data"))
    try:
        data = seed(platform)
        pack = tmp_path / "pack.zip"
        build_evidence_pack(
            platform.ledger,
            EvidenceScope(conversation_id=data.conversations["bob"]),
            Custodian(Actor("user", "usr_expert", "auditor"), "cli", "docs"),
            pack,
        )
        key = str(platform.ledger.verifier)
    finally:
        platform.close()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    env = {**os.environ, "PACK": str(pack), "KEY": key}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    script = walkthrough()

    def run(workdir: Path) -> subprocess.CompletedProcess[str]:
        workdir.mkdir()
        return subprocess.run(
            ["bash", "-c", script],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    done = run(tmp_path / "good")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("Signature Verified Successfully") == 2
    assert re.search(
        r"\d+ entries in the tree of size \d+; \d+ payloads and [1-9]\d* sources", done.stdout
    )

    # A pack whose answer text was changed fails the walkthrough.
    with zipfile.ZipFile(pack) as zf:
        files = {name: zf.read(name) for name in zf.namelist()}
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(tampered, "w") as zf:
        for name, body in files.items():
            if name == "payloads.jsonl":
                body = body.replace(b"Resetting your password", b"You get a full refund")
            zf.writestr(name, body)
    env["PACK"] = str(tampered)
    failed = run(tmp_path / "bad")
    assert failed.returncode != 0
    assert "FAILED" in failed.stdout + failed.stderr
