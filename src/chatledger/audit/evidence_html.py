"""The human-readable page of an evidence pack: one self-contained HTML file (no scripts, no
external resources, a Content-Security-Policy that forbids loading anything), rendered from
the pack's own ``replay.json`` and ``custody.json`` with every value escaped.

Rendering is deterministic: the same inputs give the same bytes, so ``verify-evidence`` can
check that the page says what the verified JSON says.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from jinja2 import BaseLoader, Environment, StrictUndefined

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2433;
background:#f5f6f8}
main{max-width:960px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px}
h3{font-size:15px;margin:16px 0 6px}
.box{background:#fff;border:1px solid #d8dce3;border-radius:6px;padding:12px 16px;margin:10px 0}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #e3e6eb;padding:4px 6px;text-align:left;vertical-align:top}
th{width:190px;color:#4a5468;font-weight:600}
.msg{border-left:4px solid #8a94a8;padding:8px 12px;margin:10px 0;background:#fff;border-radius:4px}
.user{border-color:#2f6fde}.assistant{border-color:#1f9d63}.failed{border-color:#d23c3c}
.meta{color:#5b6479;font-size:12px}
.text{white-space:pre-wrap;word-wrap:break-word;margin:6px 0}
pre{white-space:pre-wrap;word-wrap:break-word;font-size:12px;background:#f0f2f5;padding:8px;
border-radius:4px}
.erased{color:#9a2b2b;font-style:italic}
.tag{display:inline-block;background:#e7ebf3;border-radius:3px;padding:0 6px;margin-right:4px}
details{margin:4px 0} summary{cursor:pointer;color:#2f4f8f}
"""


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, indent=1)


def _content(value: Any) -> str:
    if isinstance(value, dict) and value.get("erased"):
        return f"erased {value.get('erased_at')} (seq {value.get('erasure_seq')})"
    return _fmt(value)


_ENV = Environment(
    loader=BaseLoader(), autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True
)
_COMPILED = _ENV.from_string(
    (resources.files("chatledger.audit") / "templates" / "evidence.html.j2").read_text("utf-8")
)


def render_html(replay: dict[str, Any], custody: dict[str, Any]) -> bytes:
    """The pack's readable page, from its replay document and custody record."""
    text = _COMPILED.render(replay=replay, custody=custody, css=_CSS, fmt=_fmt, content=_content)
    return text.encode("utf-8")
