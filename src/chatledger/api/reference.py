"""Renders docs/api.md from the app's OpenAPI document, so the reference cannot rot.

python -m chatledger.api.reference > docs/api.md
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI

HEADER = """# HTTP API reference

Generated from the OpenAPI document by `python -m chatledger.api.reference > docs/api.md`; a
test keeps it current. The live document is served at `/openapi.json` (browse it at `/docs`).

- Base path: `/api/v1`. Authentication: `Authorization: Bearer <api key>` (keys from
  `chatledger keys create`), or a console session cookie with an `X-CSRF-Token` header on
  unsafe methods.
- Errors: always `{"error": {"code", "message", "details", "request_id"}}` with a 4xx or 5xx
  status; `Retry-After` on 429.
- Lists: `{"items": [...], "next_cursor": ...}`; pass `cursor` back to get the next page.
"""


def _params(operation: dict[str, Any]) -> list[str]:
    lines = []
    for param in operation.get("parameters", []):
        where = param.get("in", "")
        required = " (required)" if param.get("required") else ""
        lines.append(f"- `{param['name']}` ({where}){required}")
    body = operation.get("requestBody", {}).get("content", {})
    for media in body:
        lines.append(f"- body: `{media}`")
    return lines


def render_api_reference(app: FastAPI) -> str:
    spec = app.openapi()
    lines = [HEADER]
    for path in sorted(spec["paths"]):
        for method, operation in sorted(spec["paths"][path].items()):
            lines.append(f"## `{method.upper()} {path}`\n")
            description = (operation.get("description") or operation.get("summary") or "").strip()
            lines.append(description.split("\n\n")[0] + "\n")
            params = _params(operation)
            if params:
                lines.extend(params)
                lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    from chatledger.api.app import create_app
    from chatledger.config import Settings
    from chatledger.platform import Platform

    with tempfile.TemporaryDirectory() as tmp:
        platform = Platform.open(Settings.load(Path(tmp)))
        try:
            print(render_api_reference(create_app(platform)), end="")
        finally:
            platform.close()


if __name__ == "__main__":
    main()
