"""Server-sent events (the WHATWG ``text/event-stream`` format), reduced to what model
streaming needs: the ``data`` of each event, in order."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def iter_sse_data(lines: Iterable[str]) -> Iterator[str]:
    """Yield each event's data (multi-line data joined with newlines).

    Comment lines (``:keep-alive``) and the ``event``/``id``/``retry`` fields are ignored;
    an event ends at a blank line, and a last event without one is still delivered.
    """
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)
