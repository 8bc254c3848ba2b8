"""Opening a ledger from settings: the store, the secrets, the checkpoint publishers."""

from __future__ import annotations

import os
from pathlib import Path

from chatledger.config import Settings
from chatledger.errors import InvalidInput, StorageError
from chatledger.ledger.note import NoteSigner
from chatledger.ledger.publish import DirectoryPublisher, HttpPublisher, Publisher, PublishQueue
from chatledger.ledger.service import Ledger
from chatledger.ledger.writer import WriterConfig
from chatledger.privacy.keys import MasterSecret
from chatledger.store.base import Store


def load_signer(path: Path, origin: str) -> NoteSigner:
    """The log's Ed25519 signing key, created on first use (file mode 0600)."""
    if path.exists():
        return NoteSigner.parse(path.read_text(encoding="utf-8"))
    signer = NoteSigner.generate(origin)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(signer.encode() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)  # atomic; another process may have created the key first
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return NoteSigner.parse(path.read_text(encoding="utf-8"))


def open_store(settings: Settings) -> Store:
    if settings.database_url:
        if settings.database_url.startswith(("postgresql://", "postgres://")):
            try:
                from chatledger.store.postgres import PostgresStore
            except ImportError as exc:  # psycopg is an optional dependency
                raise InvalidInput(
                    "the PostgreSQL backend needs psycopg: pip install 'chatledger[postgres]'"
                ) from exc
            return PostgresStore(settings.database_url)
        raise InvalidInput("--database must be a postgresql:// URL")
    from chatledger.store.sqlite import SqliteStore

    return SqliteStore(settings.database_path)


def open_ledger(settings: Settings) -> Ledger:
    store = open_store(settings)
    master_path, signer_path = settings.secrets_dir / "master.key", settings.secrets_dir / "log.key"
    try:
        _refuse_new_keys_for_old_entries(store, settings.secrets_dir, [master_path, signer_path])
    except BaseException:
        store.close()
        raise
    master = MasterSecret.load_or_create(master_path)
    signer = load_signer(signer_path, settings.origin)
    publishers: list[Publisher] = [DirectoryPublisher(Path(d)) for d in settings.publish_dirs]
    publishers += [HttpPublisher(u) for u in settings.publish_urls]
    config = WriterConfig(
        origin=settings.origin,
        checkpoint_every=settings.checkpoint_every,
        checkpoint_interval=settings.checkpoint_interval,
        max_payload_bytes=settings.max_payload_bytes,
    )
    return Ledger(store, master, signer, config, PublishQueue(publishers))


def _refuse_new_keys_for_old_entries(store: Store, secrets_dir: Path, keys: list[Path]) -> None:
    """Keys are made with a new ledger, never for an existing one: a database restored
    without its ``secrets/`` would otherwise get fresh keys, every entry would fail its
    authentication code, and new checkpoints would be signed by a key no verifier knows."""
    missing = [path.name for path in keys if not path.exists()]
    if not missing:
        return
    size = store.size()
    if size:
        raise StorageError(
            f"{' and '.join(missing)} missing from {secrets_dir}, but the database holds "
            f"{size} entries: restore the secrets directory from the backup made with this "
            "database (new keys would make every entry look forged)"
        )
