"""The SDK installs alone: `clients/python` builds a wheel holding only `chatledger.client`,
which depends on httpx alone and imports without the platform package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def test_the_sdk_wheel_stands_alone(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(ROOT / "clients" / "python"),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("chatledger_client-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = Parser().parsestr(
            zf.read(next(n for n in names if n.endswith("METADATA"))).decode()
        )
        zf.extractall(tmp_path / "site")
    packaged = {n.split("/")[1] for n in names if n.startswith("chatledger/")}
    assert packaged == {"client"}, packaged  # nothing of the platform ships with it
    assert "chatledger/__init__.py" not in names
    requires = [r for r in metadata.get_all("Requires-Dist") or [] if "extra ==" not in r]
    assert [r.split(">")[0].strip() for r in requires] == ["httpx"]
    # Import it with only the wheel and httpx's own site-packages on the path (-S: the editable
    # install of the full package is not seen).
    httpx_site = str(Path(httpx.__file__).parents[1])
    probe = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; "
        "import chatledger.client as c; import chatledger; "
        "assert getattr(chatledger, '__file__', None) is None, chatledger.__file__; "
        "assert c.LedgerClient; "
        "bad = [m for m in ('fastapi', 'cryptography', 'chatledger.ledger') if m in sys.modules]; "
        "assert not bad, bad; print('ok')"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe, str(tmp_path / "site"), httpx_site],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.strip() == "ok", done.stderr
