"""``/chatbots/{id}/documents`` and ``/documents/{id}``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, UploadFile

from chatledger.api.auth import CurrentPrincipal, PlatformDep
from chatledger.errors import InvalidInput, PayloadTooLarge

router = APIRouter(tags=["documents"])


@router.post("/chatbots/{chatbot_id}/documents", status_code=201)
async def upload_document(
    chatbot_id: str,
    file: UploadFile,
    request: Request,
    principal: CurrentPrincipal,
    platform: PlatformDep,
) -> dict[str, Any]:
    """Upload a PDF, DOCX, HTML, Markdown or text file (multipart field ``file``).

    Uploading a file with the name of an existing document creates a new version."""
    limit = platform.documents.limits.max_bytes
    data = await file.read(limit + 1)
    await file.close()
    if len(data) > limit:
        raise PayloadTooLarge(f"the file is larger than {limit} bytes", details={"limit": limit})
    if not file.filename:
        raise InvalidInput("the upload needs a file name")
    from starlette.concurrency import run_in_threadpool

    result = await run_in_threadpool(
        platform.documents.upload, principal, chatbot_id, file.filename, data, file.content_type
    )
    return result.to_json()


@router.get("/chatbots/{chatbot_id}/documents")
def list_documents(
    chatbot_id: str, principal: CurrentPrincipal, platform: PlatformDep
) -> dict[str, Any]:
    # A chatbot's documents, read as a collection: walking many chatbots' collections is
    # document enumeration (counted before the lookup, so unknown ids count too).
    platform.abuse.observe_access(principal, "document", f"{chatbot_id}/*")
    return {"items": platform.documents.list_documents(principal, chatbot_id), "next_cursor": None}


@router.delete("/documents/{document_id}", status_code=204)
def delete_document(
    document_id: str, principal: CurrentPrincipal, platform: PlatformDep
) -> Response:
    platform.abuse.observe_access(principal, "document", document_id)
    platform.documents.delete(principal, document_id)
    return Response(status_code=204)
