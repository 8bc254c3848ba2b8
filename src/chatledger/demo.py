"""The demo workspace: a sample chatbot over a fictional help centre, created once."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path

from chatledger.events import Actor
from chatledger.identity.principal import system_principal
from chatledger.platform import Platform

DEMO_FILE = "demo.json"
SYSTEM_PROMPT = (
    "You are the help-centre assistant of Kestrel Vault. Answer only from the "
    "provided help-centre passages, cite them, and say you don't know when they do not cover "
    "the question."
)


@dataclass
class DemoInfo:
    workspace_id: str
    chatbot_id: str
    email: str
    password: str
    api_key: str
    documents: int  # the chatbot's documents now (ensure_demo counts them on every start)


def demo_documents() -> list[tuple[str, bytes]]:
    folder = resources.files("chatledger") / "demo_data"
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    entries = manifest["documents"] if isinstance(manifest, dict) else manifest
    out = []
    for item in entries:
        name = item["file"] if isinstance(item, dict) else str(item)
        out.append((name, (folder / name).read_bytes()))
    return out


def ensure_demo(platform: Platform) -> DemoInfo:
    """Create the demo workspace once; later runs read back what was created."""
    path = platform.settings.data_dir / DEMO_FILE
    if path.exists():
        info = DemoInfo(**json.loads(path.read_text(encoding="utf-8")))
        # demo.json holds what was created; documents are uploaded and deleted since.
        return replace(info, documents=document_count(platform, info.chatbot_id))
    actor = Actor("system", "demo", "owner")
    workspace_id = platform.identity.create_workspace("Kestrel Vault demo", actor)
    operator = system_principal(workspace_id)
    email, password = "admin@demo.chatledger.local", secrets.token_urlsafe(12)
    platform.identity.create_user(operator, email=email, password=password, role="owner")
    api_key, _ = platform.identity.create_api_key(operator, role="admin", name="demo admin key")
    bot = platform.chatbots.create(
        operator,
        "Kestrel Vault help centre",
        {"system_prompt": SYSTEM_PROMPT, "access": {"public_widget": True}},
    )
    count = 0
    for name, data in demo_documents():
        platform.documents.upload(operator, bot.id, name, data, None)
        count += 1
    info = DemoInfo(workspace_id, bot.id, email, password, api_key, count)
    _write_private(path, json.dumps(asdict(info), indent=2))
    return info


def document_count(platform: Platform, chatbot_id: str) -> int:
    """The chatbot's documents now (deleted ones aside), whatever demo.json recorded."""
    rows = platform.ledger.store.query(
        "SELECT COUNT(*) FROM documents WHERE chatbot_id = ? AND deleted_at IS NULL",
        (chatbot_id,),
    )
    return int(rows[0][0])


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
