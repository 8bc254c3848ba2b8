"""The SDK is importable with only httpx and the standard library: it must not pull in the
server (FastAPI, the ledger, cryptography, SQLAlchemy...), nor the openai package."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import json, sys
import httpx  # the one dependency, and whatever it imports itself
before = set(sys.modules)
import chatledger.client
import chatledger.client.openai
from chatledger.client import LedgerClient, BufferFull, RecordRejected
added = sorted(set(sys.modules) - before)
print(json.dumps(added))
"""

FORBIDDEN = (
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "cryptography",
    "pydantic",
    "orjson",
    "rfc8785",
    "psycopg",
    "opentelemetry",
    "google",
    "argon2",
    "typer",
    "jinja2",
    "openai",
)


def test_the_client_imports_nothing_but_the_standard_library_and_httpx() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    added: list[str] = json.loads(done.stdout)
    tops = {name.split(".")[0] for name in added}
    third_party = sorted(t for t in tops if t not in sys.stdlib_module_names)
    assert third_party == ["chatledger"], third_party
    ours = sorted(n for n in added if n.startswith("chatledger"))
    assert all(n == "chatledger" or n.startswith("chatledger.client") for n in ours), ours
    assert not [n for n in added if n.split(".")[0] in FORBIDDEN]
