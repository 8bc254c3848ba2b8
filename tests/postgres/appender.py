"""A separate process appending to a PostgreSQL ledger until stopped or killed.

Usage: python -m tests.postgres.appender DATA_DIR DATABASE_URL ACK_FILE THREADS TAG

Like tests/ledger/appender.py, on PostgreSQL: each line of ACK_FILE is ``seq id``, written
right after ``append_many`` returned, i.e. once the events were acknowledged as durable.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
from pathlib import Path

from chatledger.config import Settings
from chatledger.events import Actor, Entity, Event
from chatledger.runtime import open_ledger


def sample_event(i: int, *, subject: str) -> Event:
    """tests.conftest.sample_event, without importing pytest (a faster start)."""
    return Event(
        "message.user",
        Actor("anonymous", f"visitor-{i % 7}"),
        Entity("message", f"m{i}"),
        subject=subject,
        attributes={"chatbot_id": "bot-1", "conversation_id": f"c{i % 5}", "n": i},
        payload={"text": f"message number {i}"},
    )


def main() -> None:
    data_dir, url, ack_path = sys.argv[1], sys.argv[2], sys.argv[3]
    threads, tag = int(sys.argv[4]), sys.argv[5]
    ledger = open_ledger(Settings.load(Path(data_dir), database_url=url))
    fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    lock = threading.Lock()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def work(worker: int) -> None:
        rng = random.Random(f"{tag}-{worker}")
        n = 0
        while not stop.is_set():
            batch = [
                sample_event(n + i, subject=f"{tag}-{worker}-{rng.randrange(5)}")
                for i in range(rng.randrange(1, 10))
            ]
            n += len(batch)
            receipts = ledger.append_many(batch)
            line = "".join(f"{r.seq} {r.id}\n" for r in receipts).encode()
            with lock:
                os.write(fd, line)

    workers = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    for w in workers:
        w.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for w in workers:
        w.join()
    ledger.close()
    os.close(fd)


if __name__ == "__main__":
    main()
