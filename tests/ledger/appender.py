"""A separate process that appends until killed, reporting each acknowledged append.

Usage: python -m tests.ledger.appender DATA_DIR ACK_FILE THREADS TAG

Each line of ACK_FILE is ``seq id`` written right after ``append_many`` returned, i.e. after
the ledger acknowledged the events as durable.
"""

from __future__ import annotations

import os
import random
import sys
import threading
from pathlib import Path

from chatledger.config import Settings
from chatledger.runtime import open_ledger
from tests.conftest import sample_event


def main() -> None:
    data_dir, ack_path, threads, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    ledger = open_ledger(Settings.load(Path(data_dir)))
    fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    lock = threading.Lock()
    os.write(fd, b"")
    sys.stdout.write("ready\n")
    sys.stdout.flush()

    def work(worker: int) -> None:
        rng = random.Random(worker)
        n = 0
        while True:
            batch = [
                sample_event(
                    n + i, subject=f"{tag}-{worker}-{rng.randrange(5)}", size=rng.randrange(600)
                )
                for i in range(rng.randrange(1, 20))
            ]
            n += len(batch)
            receipts = ledger.append_many(batch)
            line = "".join(f"{r.seq} {r.id}\n" for r in receipts).encode()
            with lock:
                os.write(fd, line)

    workers = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


if __name__ == "__main__":
    main()
