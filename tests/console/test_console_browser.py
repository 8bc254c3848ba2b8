"""The console and the widget in a real browser, as the people who use them would.

One scenario, in order (the tests share the server and what earlier steps created): log in,
create a chatbot and change it with a previewed diff, upload documents, chat in the
playground and in the widget on its demo page, give feedback, find the conversation in the
audit explorer, replay it, download its evidence pack and verify it offline, verify the
ledger, look at analytics; then an auditor sees no edit controls and a forced edit is
refused and recorded. Each page is saved as a screenshot under artifacts/screenshots/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, expect

from chatledger.audit.evidence import verify_evidence
from tests.console.conftest import PASSWORD, Console

RETURNS_MD = b"""# Returns and refunds

## Refund times

Refunds are paid back to the original card within 5 business days after we receive the
returned parcel. You get an email when the refund is on its way.

## Return window

You can return any item within 30 days of delivery, unused and in its original packaging.
"""

SHIPPING_TXT = b"""Shipping

Orders ship from our warehouse in Rotterdam within two working days. Express delivery
arrives the next working day for orders placed before 14:00.
"""

UNLABELLED = """() => Array.from(document.querySelectorAll(
    'input:not([type=hidden]), select, textarea, button'))
  .filter(el => {
    if (el.tagName === 'BUTTON') return !(el.textContent.trim() || el.getAttribute('aria-label'));
    return !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
      && !el.getAttribute('aria-labelledby');
  })
  .map(el => el.outerHTML.slice(0, 160))"""


class Browsing:
    """A logged-in browser context with a page that records console errors (CSP
    violations show up there) and takes checked screenshots."""

    def __init__(self, context: BrowserContext, folder: Path) -> None:
        self.context = context
        self.page = context.new_page()
        self.page.set_default_timeout(15_000)
        self.errors: list[str] = []
        self.folder = folder
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))

    def _console(self, message: Any) -> None:
        # HTTP error statuses are asserted where they are expected; anything else (a CSP
        # violation, a script error) is a failure
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)

    def snap(self, name: str) -> None:
        """Screenshot the page; check that every control has a label and nothing failed."""
        page = self.page
        unlabelled = page.evaluate(UNLABELLED)
        assert not unlabelled, f"{name}: controls without a label: {unlabelled}"
        assert page.locator("h1").count() >= 1, f"{name}: no h1"
        page.screenshot(path=str(self.folder / f"{name}.png"), full_page=True)
        assert not self.errors, f"{name}: browser console errors: {self.errors}"

    def login(self, base: str, email: str) -> None:
        page = self.page
        page.goto(f"{base}/console/login")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Chatbots", exact=True)).to_be_visible()


@pytest.fixture(scope="module")
def admin(browser: Any, console: Console, screenshots: Path) -> Iterator[Browsing]:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    session = Browsing(context, screenshots)
    yield session
    context.close()


def _ledger_actions(console: Console, sql_where: str, params: tuple[Any, ...]) -> list[Any]:
    return console.server.platform.ledger.store.query(
        f"SELECT seq, action, actor_id, conversation_id FROM ledger_entries WHERE {sql_where} "
        "ORDER BY seq",
        params,
    )


def test_login_refuses_a_wrong_password_and_records_it(admin: Browsing, console: Console) -> None:
    page = admin.page
    page.goto(f"{console.url}/console/chatbots")
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    page.get_by_label("Email").fill(console.admin_email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("wrong email or password")
    admin.snap("01-login-failed")
    assert _ledger_actions(console, "action = 'auth.login_failed'", ())
    admin.login(console.url, console.admin_email)
    expect(page).to_have_url(re.compile(r"/console/chatbots$"))


def test_create_chatbot_and_preview_a_settings_change(admin: Browsing, console: Console) -> None:
    page = admin.page
    page.get_by_label("Name", exact=True).fill("Shop assistant")
    page.get_by_label("System prompt").fill("Answer from the shop's help pages.")
    page.get_by_role("button", name="Create chatbot").click()
    expect(page.get_by_role("heading", name="Shop assistant")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Created")
    bot_id = page.url.split("/console/chatbots/")[1].split("?")[0]
    console.state["bot_id"] = bot_id

    page.get_by_label("System prompt").fill(
        "Answer from the shop's help pages.\nAlways cite the page you used."
    )
    page.get_by_label("Public chat widget for anonymous visitors").check()
    page.get_by_label("Sites allowed to embed the widget").fill("https://shop.example.com")
    page.get_by_label("Passages (top k)").fill("5")
    page.get_by_role("button", name="Preview change").click()
    preview = page.locator("#preview")
    expect(preview.get_by_role("heading", name="Preview of the change")).to_be_visible()
    expect(preview).to_contain_text("system_prompt")
    expect(preview).to_contain_text("Always cite the page you used.")
    expect(preview).to_contain_text("access.public_widget")
    expect(preview).to_contain_text("retrieval.top_k")
    # nothing is saved by a preview
    assert console.server.platform.chatbots.find(bot_id).config_version == 1  # type: ignore[union-attr]
    admin.snap("02-chatbot-preview")
    page.get_by_role("button", name="Save as version 2").click()
    expect(page.get_by_role("status")).to_contain_text("Saved")
    bot = console.server.platform.chatbots.find(bot_id)
    assert bot is not None and bot.config_version == 2
    assert bot.config.access.public_widget and bot.config.retrieval.top_k == 5
    console.state["public_key"] = bot.public_key
    expect(page.locator(".snippet")).to_contain_text(bot.public_key)
    admin.snap("03-chatbot")

    page.get_by_role("link", name="Configuration history").click()
    expect(page.get_by_role("heading", name="Version 1 → version 2")).to_be_visible()
    expect(page.locator("table.diff")).to_contain_text("retrieval.top_k")
    admin.snap("04-config-history")


def test_upload_documents_with_progress_and_delete_one(
    admin: Browsing, console: Console, tmp_path: Path
) -> None:
    page = admin.page
    bot_id = console.state["bot_id"]
    (tmp_path / "returns.md").write_bytes(RETURNS_MD)
    (tmp_path / "shipping.txt").write_bytes(SHIPPING_TXT)
    (tmp_path / "old-notes.txt").write_bytes(b"Old notes about the office coffee machine.")
    page.goto(f"{console.url}/console/chatbots/{bot_id}/documents")
    page.get_by_label("Files").set_input_files(
        [tmp_path / "returns.md", tmp_path / "shipping.txt", tmp_path / "old-notes.txt"]
    )
    page.get_by_role("button", name="Upload").click()
    results = page.locator("#upload-results")
    expect(results).to_contain_text("returns.md: uploaded, version 1")
    expect(results).to_contain_text("shipping.txt: uploaded")
    expect(page.locator("#upload-progress")).to_have_attribute("value", "100")
    table = page.locator("#documents table")
    expect(table).to_contain_text("returns.md")
    expect(table).to_contain_text("old-notes.txt")
    expect(table.locator("caption")).to_have_text("Documents (3)")
    admin.snap("05-documents")

    page.get_by_role("link", name="Delete old-notes.txt").click()
    expect(page.get_by_role("heading", name=re.compile("Delete “old-notes.txt”"))).to_be_visible()
    admin.snap("06-document-delete-confirm")
    page.get_by_role("button", name="Yes, delete it").click()
    expect(page.get_by_role("status")).to_contain_text("Deleted")
    expect(page.locator("#documents table")).not_to_contain_text("old-notes.txt")
    assert _ledger_actions(console, "action = 'document.delete'", ())


def test_playground_answers_with_sources_and_takes_feedback(
    admin: Browsing, console: Console
) -> None:
    page = admin.page
    bot_id = console.state["bot_id"]
    page.goto(f"{console.url}/console/playground?chatbot={bot_id}")
    page.get_by_label("Your message").fill("When are refunds paid back?")
    page.get_by_role("button", name="Send").click()
    answer = page.locator("li.turn.bot").first
    expect(answer.locator(".answer")).to_contain_text("5 business days")
    expect(answer.locator("table.sources")).to_contain_text("returns.md")
    expect(answer.locator(".meta")).to_contain_text("offline")
    expect(answer.locator(".meta")).to_contain_text("Tokens")
    expect(answer.locator(".grounded")).to_contain_text("%")
    expect(page.locator("#conv-info")).to_contain_text("conv_")
    conversation = page.locator("#conversation-id").get_attribute("value")
    assert conversation and conversation.startswith("conv_")
    console.state["conversation"] = conversation
    # a second turn continues the same conversation (Enter sends)
    page.get_by_label("Your message").fill("When does express delivery arrive?")
    page.get_by_label("Your message").press("Enter")
    expect(page.locator("li.turn.bot")).to_have_count(2)
    assert page.locator("#conversation-id").get_attribute("value") == conversation
    # a question the documents do not answer is recorded as unanswered
    page.get_by_label("Your message").fill("Do you sell gift cards for birthdays?")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("li.turn.bot")).to_have_count(3)
    expect(page.locator("li.turn.bot").nth(2)).to_contain_text("unanswered (recorded)")
    answer.get_by_role("button", name="Helpful", exact=True).click()
    expect(answer.locator(".feedback")).to_contain_text("positive feedback recorded")
    admin.snap("07-playground")
    rows = _ledger_actions(
        console, "action = 'message.feedback' AND conversation_id = ?", (conversation,)
    )
    assert len(rows) == 1


def test_widget_on_its_demo_page(browser: Any, console: Console, screenshots: Path) -> None:
    context = browser.new_context(viewport={"width": 1100, "height": 860})
    visitor = Browsing(context, screenshots)
    page = visitor.page
    key = console.state["public_key"]
    page.goto(f"{console.url}/widget/demo?key={key}")
    page.get_by_role("button", name="Chat with us").click()
    frame = page.frame_locator("iframe[title='Chat assistant']")
    frame.get_by_label("Your question").fill("Within how many days can I return an item?")
    frame.get_by_role("button", name="Send").click()
    answer = frame.locator("li.msg.bot").first
    expect(answer).to_contain_text("30 days")
    expect(answer.locator("ul.sources")).to_contain_text("returns.md")
    answer.get_by_role("button", name="Not helpful").click()
    expect(answer.locator(".feedback")).to_have_text("Thanks for your feedback.")
    visitor.snap("08-widget-demo")
    context.close()
    conversations = console.server.platform.ledger.store.query(
        "SELECT id, visitor_id FROM conversations WHERE channel = 'widget'"
    )
    assert len(conversations) == 1
    conv_id, visitor_id = conversations[0]
    feedback = _ledger_actions(
        console, "action = 'message.feedback' AND conversation_id = ?", (conv_id,)
    )
    assert [(r[1], r[2]) for r in feedback] == [("message.feedback", visitor_id)]


def test_audit_explorer_finds_replays_and_exports_the_conversation(
    admin: Browsing, console: Console, tmp_path: Path
) -> None:
    page = admin.page
    conversation = console.state["conversation"]
    page.goto(f"{console.url}/console/audit")
    page.get_by_label("Search text").fill("refunds paid")  # inside encrypted payloads
    page.get_by_label("Action").select_option("message.user")
    page.get_by_role("button", name="Search").click()
    rows = page.locator("table.events tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(conversation)
    admin.snap("09-audit-explorer")

    page.goto(f"{console.url}/console/audit?conversation={conversation}")
    expect(page.locator("table.events")).to_contain_text("message.answer")
    expect(page.locator("table.events")).to_contain_text("message.feedback")
    page.locator("table.events tbody tr", has_text="conversation.start").get_by_role(
        "link"
    ).first.click()
    expect(page.get_by_role("heading", name=re.compile("conversation.start"))).to_be_visible()
    expect(page.locator("pre.json").first).to_contain_text("channel")
    admin.snap("10-audit-event")

    # a configuration change shows its before/after diff
    update_seq = _ledger_actions(console, "action = 'chatbot.update'", ())[0][0]
    page.goto(f"{console.url}/console/audit/events/{update_seq}")
    expect(page.locator("table.diff")).to_contain_text("retrieval.top_k")
    admin.snap("11-audit-event-diff")

    page.goto(f"{console.url}/console/audit/events/{_first_seq(console, conversation)}")
    page.get_by_role("link", name=f"Conversation {conversation}").click()
    expect(page.get_by_role("heading", name="Conversation replay")).to_be_visible()
    turn = page.locator("li.turn.bot").first
    expect(turn).to_contain_text("5 business days")
    expect(turn.locator("table.sources")).to_contain_text("returns.md")
    expect(turn).to_contain_text("Feedback: positive")
    page.get_by_label("Resolution", exact=True).select_option("resolved")
    page.get_by_label("Outcome tags").fill("deflection")
    page.get_by_role("button", name="Save resolution and outcome").click()
    expect(page.get_by_role("status")).to_contain_text("Conversation updated")
    expect(page.locator("dl.facts")).to_contain_text("deflection")
    admin.snap("12-replay")

    page.get_by_label("Reason for the export").fill("Customer dispute #42")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download evidence pack").click()
    pack = tmp_path / "evidence.zip"
    download_info.value.save_as(pack)
    ledger = console.server.platform.ledger
    report = verify_evidence(pack, key=str(ledger.verifier))
    assert report.ok, report.to_json()
    exported = _ledger_actions(console, "action = 'audit.evidence'", ())
    assert exported
    custody = ledger.read(int(exported[-1][0]))
    assert custody.entry.attributes["via"] == "console"
    assert custody.entry.attributes["conversation_id"] == conversation
    assert custody.payload is not None and custody.payload["reason"] == "Customer dispute #42"
    assert _ledger_actions(
        console, "action = 'conversation.view' AND conversation_id = ?", (conversation,)
    )


def _first_seq(console: Console, conversation: str) -> int:
    return int(_ledger_actions(console, "conversation_id = ?", (conversation,))[0][0])


def test_integrity_verify_now_shows_progress_and_result(admin: Browsing, console: Console) -> None:
    page = admin.page
    page.goto(f"{console.url}/console/integrity")
    expect(page.get_by_test_id("tree-size")).to_contain_text("entries")
    expect(page.locator("dl.facts")).to_contain_text(str(console.server.platform.ledger.verifier))
    page.get_by_role("button", name="Verify now").click()
    expect(page.get_by_test_id("verify-result")).to_contain_text("Verified")
    page.reload()
    expect(page.get_by_test_id("last-verification")).to_contain_text("passed")
    admin.snap("13-integrity")


def test_analytics_draws_charts(admin: Browsing, console: Console) -> None:
    page = admin.page
    page.goto(f"{console.url}/console/analytics")
    expect(page.locator("figure.chart")).to_have_count(6)
    feedback = page.locator("figure.chart", has_text="Feedback by cited document")
    expect(feedback.locator("svg rect")).not_to_have_count(0)
    resolutions = page.locator("figure.chart", has_text="Conversations per day")
    expect(resolutions.locator("svg rect")).not_to_have_count(0)
    expect(page.locator("figure.chart", has_text="Outcome tags per day")).to_contain_text(
        "deflection"
    )
    expect(page.locator("figure.chart", has_text="Unanswered questions")).to_contain_text("gift")
    admin.snap("14-analytics")

    conversation = console.state["conversation"]
    page.goto(f"{console.url}/console/admin/privacy")
    page.get_by_label("Hold on").select_option("conversation")
    page.get_by_label("Conversation, user/visitor or chatbot id").fill(conversation)
    page.get_by_label("Reason", exact=True).fill("Customer dispute #42")
    page.get_by_role("button", name="Place legal hold").click()
    expect(page.get_by_role("status")).to_contain_text("Legal hold placed")
    expect(page.locator("table", has_text="Customer dispute #42")).to_contain_text("active")
    admin.snap("16-retention-and-holds")
    assert _ledger_actions(console, "action = 'privacy.hold_placed'", ())
    for path, name in (
        ("/console/admin/users", "15-users-and-keys"),
        ("/console/admin/guard", "17-guard-and-limits"),
        ("/console/chatbots", "18-chatbots"),
    ):
        page.goto(console.url + path)
        admin.snap(name)


def test_auditor_sees_no_edit_controls_and_a_forced_edit_is_refused_and_recorded(
    browser: Any, console: Console, screenshots: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    auditor = Browsing(context, screenshots)
    page = auditor.page
    bot_id = console.state["bot_id"]
    auditor.login(console.url, console.auditor_email)
    expect(page.get_by_role("button", name="Create chatbot")).to_have_count(0)
    expect(page.get_by_role("link", name="Playground")).to_have_count(0)
    page.goto(f"{console.url}/console/chatbots/{bot_id}")
    expect(page.get_by_role("button", name="Preview change")).to_have_count(0)
    expect(page.get_by_label("System prompt")).to_be_disabled()
    auditor.snap("19-auditor-chatbot")
    page.goto(f"{console.url}/console/chatbots/{bot_id}/documents")
    expect(page.get_by_role("button", name="Upload")).to_have_count(0)
    expect(page.get_by_role("link", name=re.compile("^Delete"))).to_have_count(0)
    auditor.snap("20-auditor-documents")

    page.goto(f"{console.url}/console/chatbots/{bot_id}")
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    status = page.evaluate(
        """async ([url, token]) => {
            const body = new URLSearchParams({csrf_token: token, system_prompt: 'Obey me.'});
            const response = await fetch(url, {method: 'POST', body});
            return response.status;
        }""",
        [f"/console/chatbots/{bot_id}/settings", token],
    )
    assert status == 403
    without_token = page.evaluate(
        """async (url) => (await fetch(url, {method: 'POST',
              body: new URLSearchParams({system_prompt: 'Obey me.'})})).status""",
        f"/console/chatbots/{bot_id}/settings",
    )
    assert without_token == 403
    bot = console.server.platform.chatbots.find(bot_id)
    assert bot is not None and "Obey me." not in bot.config.system_prompt
    denied = _ledger_actions(
        console, "action = 'access.denied' AND actor_id = ?", (console.auditor_id,)
    )
    entries = [console.server.platform.ledger.entry(int(r[0])) for r in denied]
    assert len(entries) == 2, "the refused edits were not recorded"
    forbidden, no_token = entries
    assert forbidden.attributes["permission"] == "chatbot.write"
    assert forbidden.attributes["path"] == f"/console/chatbots/{bot_id}/settings"
    assert forbidden.actor["role"] == "auditor"
    assert no_token.attributes["reason"] == "csrf"
    # the auditor can still read: the explorer shows the refusal
    page.goto(f"{console.url}/console/audit?action=access.denied")
    expect(page.locator("table.events")).to_contain_text(console.auditor_email)
    auditor.snap("21-auditor-audit")
    context.close()


def test_security_headers_csrf_and_widget_origins(console: Console) -> None:
    base = console.url
    key = console.state["public_key"]
    with httpx.Client(base_url=base) as client:
        login = client.get("/console/login")
        csp = login.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert login.headers["x-frame-options"] == "DENY"
        assert login.headers["x-content-type-options"] == "nosniff"
        assert login.headers["cache-control"] == "no-store"
        # no login without the form's own CSRF token
        refused = client.post(
            "/console/login", data={"email": console.admin_email, "password": PASSWORD}
        )
        assert refused.status_code == 403

        frame = client.get(f"/widget/frame?key={key}&origin=https://shop.example.com")
        assert frame.status_code == 200
        frame_csp = frame.headers["content-security-policy"]
        assert "frame-ancestors 'self' https://shop.example.com" in frame_csp
        assert "x-frame-options" not in frame.headers
        evil = client.get(f"/widget/frame?key={key}&origin=https://evil.example")
        assert evil.status_code == 403
        lying = client.get(
            f"/widget/frame?key={key}&origin=https://shop.example.com",
            headers={"referer": "https://evil.example/page"},
        )
        assert lying.status_code == 403
        assert client.get("/widget/frame?key=pk_unknown").status_code == 404
        token = re.search(r'data-token="([^"]+)"', frame.text)
        assert token is not None
        bad = client.post("/widget/api/conversations", headers={"x-widget-token": "x.y"})
        assert bad.status_code == 401
        forged = token.group(1)[:-2] + ("AA" if not token.group(1).endswith("AA") else "BB")
        assert (
            client.post("/widget/api/conversations", headers={"x-widget-token": forged}).status_code
            == 401
        )
        started = client.post(
            "/widget/api/conversations",
            headers={"x-widget-token": token.group(1), "origin": base},
        )
        assert started.status_code == 201
        # another visitor's token cannot read or write this conversation
        other = client.get(f"/widget/frame?key={key}&origin=https://shop.example.com")
        other_token = re.search(r'data-token="([^"]+)"', other.text)
        assert other_token is not None
        stolen = client.post(
            f"/widget/api/conversations/{started.json()['conversation_id']}/messages",
            headers={"x-widget-token": other_token.group(1)},
            json={"text": "hello"},
        )
        assert stolen.status_code in (403, 404)  # refused, and nothing was written
        script = client.get("/widget.js")
        assert script.headers["content-type"].startswith("text/javascript")
        assert script.headers["cross-origin-resource-policy"] == "cross-origin"
    denied = _ledger_actions(console, "action = 'access.denied'", ())
    reasons = {
        console.server.platform.ledger.entry(int(r[0])).attributes.get("reason") for r in denied
    }
    assert "widget_origin" in reasons


def test_an_admin_is_not_offered_and_cannot_grant_the_owner_role(console: Console) -> None:
    def form_token(html: str) -> str:
        found = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert found is not None
        return found.group(1)

    with httpx.Client(base_url=console.url, follow_redirects=True) as client:
        login = client.get("/console/login")
        signed_in = client.post(
            "/console/login",
            data={
                "email": console.admin_email,
                "password": PASSWORD,
                "csrf_token": form_token(login.text),
            },
        )
        assert signed_in.status_code == 200
        page = client.get("/console/admin/users")
        assert page.status_code == 200
        assert "<option>owner</option>" not in page.text  # neither for a user nor for a key
        before = console.server.platform.ledger.size()
        refused = client.post(
            f"/console/admin/users/{console.auditor_id}/role",
            data={"role": "owner", "csrf_token": form_token(page.text)},
        )
        assert refused.status_code == 403
    ledger = console.server.platform.ledger
    denied = [e for e in ledger.entries(before, ledger.size()) if e.action == "access.denied"]
    assert denied and denied[-1].attributes["permission"] == "owner"
    assert ledger.store.query(
        "SELECT role FROM memberships WHERE user_id = ?", (console.auditor_id,)
    ) == [("auditor",)]
