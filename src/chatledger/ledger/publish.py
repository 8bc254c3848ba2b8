"""Publishing checkpoints outside the database, where an admin who controls it cannot reach.

A rollback of the whole database to an older copy, or a truncated tail, is detected by
verifying the log against a checkpoint held elsewhere: the log must extend it.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from pathlib import Path
from typing import Protocol

import httpx

from chatledger.store.base import CheckpointRow

log = logging.getLogger(__name__)


class Publisher(Protocol):
    def publish(self, checkpoint: CheckpointRow) -> None: ...

    def describe(self) -> str: ...


class DirectoryPublisher:
    """Writes ``checkpoint`` (the latest) and ``checkpoints/<size>`` atomically, fsynced."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"directory {self.directory}"

    def publish(self, checkpoint: CheckpointRow) -> None:
        history = self.directory / "checkpoints"
        with self._lock:
            history.mkdir(parents=True, exist_ok=True)
            _atomic_write(history / str(checkpoint.size), checkpoint.note)
            latest = self.directory / "checkpoint"
            if _size_of(latest) <= checkpoint.size:  # never move the latest one backwards
                _atomic_write(latest, checkpoint.note)


def _size_of(path: Path) -> int:
    try:
        return int(path.read_text(encoding="utf-8").split("\n")[1])
    except (OSError, IndexError, ValueError):
        return -1


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class HttpPublisher:
    """POSTs the signed note as text/plain to an operator-chosen endpoint, with retries."""

    def __init__(self, url: str, *, timeout: float = 5.0, attempts: int = 4) -> None:
        self.url = url
        self._timeout = timeout
        self._attempts = attempts

    def describe(self) -> str:
        return f"HTTP endpoint {self.url}"

    def publish(self, checkpoint: CheckpointRow) -> None:
        delay = 0.2
        for attempt in range(1, self._attempts + 1):
            try:
                response = httpx.post(
                    self.url,
                    content=checkpoint.note.encode(),
                    headers={"content-type": "text/plain; charset=utf-8"},
                    timeout=self._timeout,
                )
                if response.status_code < 300:
                    return
                reason = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                reason = type(exc).__name__
            if attempt == self._attempts:
                raise RuntimeError(f"publishing checkpoint to {self.url} failed: {reason}")
            time.sleep(delay)
            delay *= 2


class PublishQueue:
    """Publishes off the append path: a slow or dead destination never slows appends."""

    def __init__(self, publishers: list[Publisher]) -> None:
        self.publishers = publishers
        self.last_error: str | None = None
        self.last_published: int | None = None
        self._queue: queue.Queue[CheckpointRow | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="checkpoint-publisher", daemon=True)
        self._thread.start()

    def submit(self, checkpoint: CheckpointRow) -> None:
        if self.publishers:
            self._queue.put(checkpoint)

    def publish_now(self, checkpoint: CheckpointRow) -> None:
        for publisher in self.publishers:
            publisher.publish(checkpoint)
        self.last_published = checkpoint.size

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            for publisher in self.publishers:
                try:
                    publisher.publish(item)
                    self.last_published = item.size
                except Exception as exc:  # keep publishing later checkpoints
                    self.last_error = f"{publisher.describe()}: {exc}"
                    log.warning("checkpoint publication failed: %s", self.last_error)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)
