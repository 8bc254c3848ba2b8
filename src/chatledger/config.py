"""Configuration: one explicit object, read from the data directory and the environment once.

The data directory holds the embedded database, the secrets (the log's signing key and the
master secret that wraps subject keys) and ``settings.json``. The environment is read only
by :meth:`Settings.from_env`, at the edge (CLI, server start-up).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chatledger.errors import InvalidInput

SETTINGS_FILE = "settings.json"


@dataclass
class Settings:
    data_dir: Path
    database_url: str | None = None
    origin: str = ""
    checkpoint_every: int = 1000
    checkpoint_interval: float = 60.0
    max_payload_bytes: int = 64 * 1024
    publish_dirs: list[str] = field(default_factory=list)
    publish_urls: list[str] = field(default_factory=list)
    # requests per window for each kind of caller: {"ip": [120, 60], "api_key": [600, 60], ...}
    rate_limits: dict[str, list[float]] = field(default_factory=dict)
    # SIEM destinations (syslog, Splunk HEC, webhook): see docs/siem.md
    forwarders: list[dict[str, Any]] = field(default_factory=list)
    # chat turns doing CPU work at once in one process (0: one per CPU core); see
    # docs/operations.md, "Sizing a server"
    chat_turn_slots: int = 0

    @classmethod
    def from_env(
        cls,
        data_dir: str | Path | None = None,
        database_url: str | None = None,
        *,
        create: bool = True,
    ) -> Settings:
        chosen = data_dir or os.environ.get("CHATLEDGER_DATA_DIR") or "./chatledger-data"
        url = database_url or os.environ.get("CHATLEDGER_DATABASE_URL") or None
        return cls.load(Path(chosen), database_url=url, create=create)

    @classmethod
    def load(
        cls, data_dir: Path, *, database_url: str | None = None, create: bool = True
    ) -> Settings:
        """Read ``settings.json``, creating it on first use with a fresh log origin, unless
        ``create`` is false: then a folder that holds no settings is refused (a mistyped
        ``--data-dir`` must not become a new, empty ledger that verifies)."""
        data_dir = data_dir.expanduser().resolve()
        if data_dir.exists() and not data_dir.is_dir():
            raise InvalidInput(f"the data directory {data_dir} is a file, not a folder")
        path = data_dir / SETTINGS_FILE
        if not create and not path.exists():
            raise InvalidInput(
                f"no ChatLedger data in {data_dir} (it has no {SETTINGS_FILE}): check --data-dir "
                "or CHATLEDGER_DATA_DIR; `chatledger serve`, `demo` and `db upgrade` create one"
            )
        stored: dict[str, Any] = {}
        if path.exists():
            try:
                stored = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise InvalidInput(f"cannot read {path}: {exc}") from exc
            if not isinstance(stored, dict):
                raise InvalidInput(f"{path} must hold a JSON object")
        settings = cls(data_dir=data_dir, database_url=database_url)
        known = {f for f in cls.__dataclass_fields__ if f not in {"data_dir", "database_url"}}
        for key, value in stored.items():
            if key in known:
                _check_kind(path, key, value, getattr(settings, key))
                setattr(settings, key, value)
        if not settings.origin:
            settings.origin = f"chatledger.local/{secrets.token_hex(8)}"
            if not settings.publish_dirs:
                settings.publish_dirs = [str(data_dir / "published-checkpoints")]
            settings.save()
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.checkpoint_every < 1:
            raise InvalidInput("checkpoint_every must be at least 1")
        if self.checkpoint_interval <= 0:
            raise InvalidInput("checkpoint_interval must be positive")
        if not 256 <= self.max_payload_bytes <= 16 * 1024 * 1024:
            raise InvalidInput("max_payload_bytes must be between 256 and 16 MiB")
        if not 0 <= self.chat_turn_slots <= 1024:
            raise InvalidInput("chat_turn_slots must be between 0 (automatic) and 1024")
        if "+" in self.origin or any(ch.isspace() for ch in self.origin):
            raise InvalidInput("origin must contain no spaces and no '+'")

    def save(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        data.pop("data_dir")
        data.pop("database_url")
        path = self.data_dir / SETTINGS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    @property
    def database_path(self) -> Path:
        return self.data_dir / "chatledger.db"

    @property
    def secrets_dir(self) -> Path:
        return self.data_dir / "secrets"


_KINDS: dict[type, tuple[tuple[type, ...], str]] = {
    int: ((int,), "an integer"),
    float: ((int, float), "a number"),
    str: ((str,), "a string"),
    list: ((list,), "a list"),
    dict: ((dict,), "an object"),
}


def _check_kind(path: Path, key: str, value: Any, default: Any) -> None:
    """A setting read from the file has its default's JSON type (bools are not numbers)."""
    accepted, described = _KINDS[type(default)]
    if type(value) not in accepted:
        raise InvalidInput(
            f"{path}: {key} must be {described}, not {json.dumps(value)[:40]}",
            details={"setting": key},
        )
