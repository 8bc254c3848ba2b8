"""Build the demo knowledge base in src/chatledger/demo_data/.

The help centre of "Kestrel Vault", a fictional cloud storage company. The Markdown, text
and HTML articles are kept as files in the folder; this script writes the DOCX (python-docx)
and PDF (reportlab) articles from the content below, then ``manifest.json`` for all of them.
The output is byte-for-byte reproducible (fixed dates, fixed zip timestamps, reportlab's
invariant mode), so re-running it changes nothing unless the content changed.

Usage: .venv/bin/python scripts/make_demo_data.py [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

Block = tuple[str, str | list[list[str]]]

DEMO_DIR = Path(__file__).resolve().parents[1] / "src" / "chatledger" / "demo_data"
FIXED_DATE = dt.datetime(2024, 6, 1, 9, 0, 0)
AUTHOR = "Kestrel Vault Help Centre"

# Articles kept as hand-written files: file name -> title a parser must find.
TEXT_ARTICLES = {
    "account-security.html": "Keeping your account secure",
    "api-rate-limits.md": "API rate limits",
    "contact-support.txt": "Contacting Kestrel Vault support",
    "file-versions-and-trash.md": "File versions and the trash",
    "hardware-shipping.html": "Shipping the Kestrel Box",
    "mobile-app.html": "Using the Kestrel Vault mobile app",
    "password-reset.txt": "Resetting your password",
    "plans-and-pricing.md": "Plans and pricing",
    "sharing-links.html": "Sharing files with links",
    "storage-quota.txt": "How your storage quota works",
    "troubleshooting-sync.md": "Troubleshooting sync problems",
    "two-factor-authentication.md": "Two-factor authentication (2FA)",
}
FORMATS = {".md": "markdown", ".txt": "text", ".html": "html", ".docx": "docx", ".pdf": "pdf"}

# Generated articles: ("title", text) first, then ("h1" | "h2" | "p" | "li", text) and
# ("table", rows). "h1" is a section heading (Heading 1 in Word, level 1 in the PDF outline).
DOCX_ARTICLES: dict[str, list[Block]] = {
    "billing-and-invoices.docx": [
        ("title", "Billing and invoices"),
        (
            "p",
            "This article explains how Kestrel Vault charges for subscriptions, where to find "
            "your invoices and what happens when a payment fails.",
        ),
        ("h1", "When you are charged"),
        (
            "p",
            "Subscriptions renew automatically on the same day of each month or year as the "
            "day you subscribed. We email you a receipt after every payment, and for yearly "
            "plans we send a reminder 7 days before the renewal.",
        ),
        (
            "p",
            "When you upgrade, you pay the prorated difference for the rest of the current "
            "period straight away. When you downgrade, the change takes effect at the end of "
            "the current period and you are not charged again until then.",
        ),
        ("h1", "Payment methods"),
        ("li", "Credit and debit cards: Visa, Mastercard and American Express."),
        ("li", "SEPA Direct Debit, for bank accounts in the euro area."),
        ("li", "PayPal."),
        (
            "li",
            "Bank transfer against an invoice, for yearly Business plans with 10 users or more.",
        ),
        (
            "p",
            "All prices are in euros. If your card is in another currency, your bank converts "
            "the amount and may charge a fee. We do not accept cryptocurrencies or cheques.",
        ),
        ("h1", "Invoices and VAT"),
        (
            "p",
            "Download your invoices as PDF files from Settings > Billing > Invoices. To show "
            "your company name and VAT number on invoices, add them under Settings > Billing "
            "> Billing details before the next payment; invoices already issued cannot be "
            "changed. Business customers with a valid EU VAT number are invoiced without VAT "
            "under the reverse-charge rule.",
        ),
        ("h1", "Failed payments"),
        (
            "p",
            "If a payment fails, we email you and retry the payment 3, 5 and 7 days later. "
            "Update your payment method under Settings > Billing to settle it at once.",
        ),
        (
            "p",
            "If the payment still fails 14 days after the renewal date, your account moves to "
            "the Free plan. If you then use more than the 10 GB of the Free plan, your account "
            "becomes read-only: you can download your files but not upload new ones. We do "
            "not delete files because of a failed payment.",
        ),
        ("h1", "Payment summary"),
        (
            "table",
            [
                ["Plan", "Billed", "Payment methods"],
                ["Plus, Family", "monthly or yearly", "card, SEPA, PayPal"],
                ["Business", "monthly or yearly", "card, SEPA, PayPal, bank transfer"],
                ["Enterprise", "yearly", "bank transfer"],
            ],
        ),
    ],
    "data-export.docx": [
        ("title", "Exporting your data"),
        (
            "p",
            "You can download a complete copy of your data at any time, for example to keep "
            "an offline archive or to move to another service. Exporting is free on every "
            "plan and does not change anything in your account.",
        ),
        ("h1", "Requesting an export"),
        ("li", "Go to Settings > Privacy > Export my data."),
        (
            "li",
            "Choose what to include: your files, file metadata, account information and the "
            "activity log of your account.",
        ),
        ("li", "Select Request export and confirm with your password."),
        (
            "p",
            "We prepare the export in the background and email you when it is ready, within "
            "48 hours and usually much sooner. You can request one export every 24 hours.",
        ),
        ("h1", "Downloading the export"),
        (
            "p",
            "The email contains a download link that is valid for 7 days. Large exports are "
            "split into ZIP archives of up to 50 GB each. Files are exported exactly as you "
            "stored them; metadata comes as JSON files and the activity log as a CSV file.",
        ),
        ("h1", "Private Vault"),
        (
            "p",
            "Files in your Private Vault are end-to-end encrypted and we cannot read them, so "
            "they are not part of an export requested on the website. To export them, unlock "
            "the vault in the desktop app and choose Vault > Export decrypted copy.",
        ),
        ("h1", "Business teams"),
        (
            "p",
            "Team admins can export the data of a member from the Admin console under "
            "Members > Export data, for example when the member leaves the company. The "
            "member is not notified, and the export is recorded in the team's audit log.",
        ),
        ("h1", "Other ways to download everything"),
        (
            "p",
            "If you have the desktop app, you can also sync all folders to a computer with "
            "enough free space, then copy them. This is often faster than an export for very "
            "large accounts.",
        ),
    ],
    "team-administration.docx": [
        ("title", "Administering a Business team"),
        (
            "p",
            "Business and Enterprise teams are managed in the Admin console at "
            "admin.kestrelvault.example. This article covers roles, members, seats and team "
            "policies.",
        ),
        ("h1", "Roles"),
        (
            "table",
            [
                ["Role", "What they can do"],
                ["Owner", "Everything, including billing and deleting the team. One per team."],
                ["Admin", "Manage members, seats, policies and the audit log."],
                ["Member", "Use Kestrel Vault with the team's storage and shared folders."],
                ["Guest", "Access only the folders shared with them. Guests need no seat."],
            ],
        ),
        ("h1", "Adding members"),
        (
            "p",
            "Invite people by email under Members > Invite. Each member needs a seat. You can "
            "also verify your company's domain so that colleagues who sign up with a work "
            "email address are asked to join the team.",
        ),
        ("h1", "Removing members"),
        (
            "p",
            "When you remove a member, you choose a colleague who receives their files. The "
            "files stay available for transfer for 30 days. The member keeps a free personal "
            "account with their private files if they choose to.",
        ),
        ("h1", "Seats and billing"),
        (
            "p",
            "You can add seats at any time; you pay the prorated price for the rest of the "
            "billing period. Removing seats takes effect at the next renewal. A team needs at "
            "least 3 seats.",
        ),
        ("h1", "Team policies"),
        ("li", "Require two-factor authentication for all members."),
        ("li", "Disable public sharing links, or require a password and an expiry date."),
        ("li", "Restrict sign-in to single sign-on (SSO)."),
        ("li", "Limit which devices may sync, for example company computers only."),
        ("h1", "Audit log"),
        (
            "p",
            "The audit log records sign-ins, sharing, file deletions and admin actions. It is "
            "kept for one year on Business plans and can be exported as CSV under Reports > "
            "Audit log.",
        ),
        ("h1", "Transferring ownership"),
        (
            "p",
            "The owner can make another admin the owner under Settings > Team > Transfer "
            "ownership. The new owner must confirm by email.",
        ),
    ],
    "closing-your-account.docx": [
        ("title", "Closing your account"),
        (
            "p",
            "You can cancel a paid subscription and keep a free account, or delete your "
            "account and all its data. This article explains both.",
        ),
        ("h1", "Cancelling a subscription"),
        (
            "p",
            "Go to Settings > Billing > Cancel subscription. Your plan stays active until the "
            "end of the period you have paid for, then your account moves to the Free plan. "
            "Refunds follow our refund policy.",
        ),
        ("h1", "Deleting your account"),
        ("li", "Export your data first if you want to keep a copy."),
        ("li", "Go to Settings > Account > Delete account."),
        ("li", "Confirm with your password and, if it is on, two-factor authentication."),
        (
            "p",
            "Your account is deactivated at once and deleted after a grace period of 14 days. "
            "During the grace period you can change your mind: simply sign in again to "
            "reactivate the account.",
        ),
        ("h1", "What happens to your data"),
        (
            "p",
            "After the grace period, your files and personal data are deleted from our "
            "systems within 30 days, and from our backups within a further 35 days. People "
            "you shared files with lose access to them. We keep invoices for 7 years because "
            "tax law requires it.",
        ),
        ("h1", "Business teams"),
        (
            "p",
            "Members of a Business team cannot delete an account that the team manages; ask "
            "your admin. To close the whole team, the owner deletes it from the Admin console "
            "under Settings > Team > Delete team.",
        ),
    ],
}

PDF_ARTICLES: dict[str, list[Block]] = {
    "refund-policy.pdf": [
        ("title", "Refund policy"),
        (
            "p",
            "We want you to be happy with Kestrel Vault. This policy explains when we refund "
            "subscriptions and hardware, and how to ask for a refund.",
        ),
        ("h1", "Yearly subscriptions"),
        (
            "p",
            "If you are not satisfied, you can ask for a full refund within 14 days of buying "
            "a yearly plan or of its automatic renewal. No reason is needed. After 14 days, a "
            "yearly plan is not refunded, but you can cancel it so that it does not renew.",
        ),
        ("h1", "Monthly subscriptions"),
        (
            "p",
            "Monthly plans are not refunded for the current month, including partial months. "
            "When you cancel, your plan stays active until the end of the month you have paid "
            "for and does not renew.",
        ),
        ("h1", "Business seats"),
        (
            "p",
            "When a Business team removes seats before the renewal, the unused time is not "
            "paid back in money; it is credited to the team's next invoice.",
        ),
        ("h1", "Kestrel Box hardware"),
        (
            "p",
            "You can return a Kestrel Box within 30 days of delivery for a full refund, if it "
            "is complete and undamaged. Return shipping is free within the EU. The Kestrel "
            "Box has a two-year warranty: a faulty device is repaired or replaced free of "
            "charge, including shipping.",
        ),
        ("h1", "How to ask for a refund"),
        (
            "p",
            "Go to Settings > Billing, find the payment and choose Request refund, or write to "
            "support@kestrelvault.example with the invoice number. Refunds go back to the "
            "original payment method within 5 to 10 business days; PayPal refunds usually "
            "arrive within 3 to 5 business days.",
        ),
        ("h1", "Exceptions"),
        (
            "p",
            "We do not refund accounts closed because they broke our terms of service, for "
            "example for abuse or illegal content. If you dispute a payment with your bank "
            "(a chargeback), the account is suspended until the dispute is resolved.",
        ),
    ],
    "privacy-and-gdpr.pdf": [
        ("title", "Privacy and GDPR"),
        (
            "p",
            "Kestrel Vault Ltd is the data controller for the personal data of our users. "
            "This article summarises how we handle your data and how to use your rights under "
            "the General Data Protection Regulation (GDPR). The full privacy notice is linked "
            "at the bottom of every page.",
        ),
        ("h1", "Where your data is stored"),
        (
            "p",
            "Your files and account data are stored in our data centres in Frankfurt, "
            "Germany, and Dublin, Ireland. We do not transfer your files outside the European "
            "Economic Area. A few service providers, such as our support ticketing system, "
            "may process account data outside the EEA under the European Commission's "
            "standard contractual clauses.",
        ),
        ("h1", "What we do not do"),
        (
            "p",
            "We do not sell personal data, we do not show advertising, and we do not scan "
            "the contents of your files to profile you. Files are scanned automatically only "
            "for malware when they are shared with a public link.",
        ),
        ("h1", "Your rights"),
        (
            "p",
            "You have the right to access, correct, delete and port your personal data, and "
            "to object to or restrict some processing. Most of these you can do yourself in "
            "Settings > Privacy, including exporting all your data. For anything else, write "
            "to privacy@kestrelvault.example. We answer within 30 days; for complex requests "
            "we may extend this by two months and tell you why.",
        ),
        (
            "p",
            "Our data protection officer can be reached at dpo@kestrelvault.example. You also "
            "have the right to complain to a data protection supervisory authority.",
        ),
        ("h1", "How long we keep data"),
        (
            "p",
            "Deleted files are kept in the trash for the retention period of your plan, then "
            "deleted permanently. When you delete your account, your data is deleted within "
            "30 days after a 14-day grace period, and backups are overwritten within a further "
            "35 days. Invoices are kept for 7 years to meet tax law.",
        ),
        ("h1", "Business customers"),
        (
            "p",
            "For Business and Enterprise teams we act as a processor for the team's data. "
            "The data processing agreement (DPA) and the list of sub-processors are available "
            "in the Admin console under Legal.",
        ),
    ],
    "single-sign-on.pdf": [
        ("title", "Single sign-on (SSO)"),
        (
            "p",
            "With single sign-on, members of a Business or Enterprise team sign in to Kestrel "
            "Vault with their company account. SSO is included in the Business and Enterprise "
            "plans at no extra cost.",
        ),
        ("h1", "Supported protocols and providers"),
        (
            "p",
            "We support SAML 2.0 and OpenID Connect. Any standard identity provider works; we "
            "test every release with Okta, Microsoft Entra ID, Google Workspace, OneLogin and "
            "JumpCloud.",
        ),
        ("h1", "Setting up SSO"),
        (
            "p",
            "1. In the Admin console, go to Security > Single sign-on and verify your email "
            "domain by adding the TXT record we show to your DNS.",
        ),
        (
            "p",
            "2. In your identity provider, create an application with the Assertion Consumer "
            "Service URL https://sso.kestrelvault.example/saml/acs and the entity ID shown in "
            "the Admin console. Send the user's email address as the NameID.",
        ),
        (
            "p",
            "3. Upload your identity provider's metadata file in the Admin console, test the "
            "connection with your own account, then turn SSO on for the team.",
        ),
        ("h1", "Provisioning"),
        (
            "p",
            "With just-in-time provisioning, a team account is created the first time a "
            "colleague signs in with SSO, if a seat is free. Enterprise plans also support "
            "SCIM 2.0, so that people are added and removed automatically when they join or "
            "leave your company.",
        ),
        ("h1", "Enforcing SSO"),
        (
            "p",
            "When SSO is enforced, members can sign in only through your identity provider. "
            "The team owner can always sign in with their password and two-factor "
            "authentication, so that a broken SSO configuration never locks you out. SSO "
            "sessions last 12 hours by default; admins can choose between 1 and 72 hours.",
        ),
        ("h1", "Troubleshooting"),
        (
            "p",
            "Most SSO errors come from an expired signing certificate, a clock difference of "
            "more than 5 minutes between servers, or an email address in the assertion that "
            "does not match the member's Kestrel Vault address.",
        ),
    ],
    "service-level-agreement.pdf": [
        ("title", "Service level agreement and outage policy"),
        (
            "p",
            "This article describes our uptime commitment, what happens during an outage and "
            "how to claim service credits. It forms part of the Business and Enterprise "
            "terms.",
        ),
        ("h1", "Uptime commitment"),
        (
            "p",
            "For Business plans we commit to 99.9% availability in every calendar month; for "
            "Enterprise plans to 99.95%. Free, Plus and Family plans have no service level "
            "commitment, although they run on the same infrastructure.",
        ),
        (
            "p",
            "The service counts as unavailable when more than 5% of requests fail for at "
            "least 5 consecutive minutes. Scheduled maintenance does not count: we announce it "
            "at least 72 hours in advance, it takes place on Sundays between 02:00 and 06:00 "
            "CET, and it lasts at most 4 hours per month. Outages caused by your own network "
            "or by events outside our reasonable control do not count either.",
        ),
        ("h1", "Service credits"),
        (
            "p",
            "If we miss the commitment, Business customers receive a credit on the monthly "
            "fee for the affected month:",
        ),
        (
            "table",
            [
                ["Monthly availability", "Service credit"],
                ["below 99.9% but at least 99.0%", "10%"],
                ["below 99.0% but at least 95.0%", "25%"],
                ["below 95.0%", "50%"],
            ],
        ),
        (
            "p",
            "Enterprise credits are set in each contract. Credits are the only remedy for "
            "missed availability and never exceed 50% of the monthly fee.",
        ),
        ("h1", "Claiming a credit"),
        (
            "p",
            "Write to support within 30 days after the end of the affected month, with the "
            "subject SLA claim, the dates and times of the outage and the affected users. "
            "Approved credits are applied to your next invoice.",
        ),
        ("h1", "During an outage"),
        (
            "p",
            "We post updates on status.kestrelvault.example at least every 30 minutes during "
            "a major incident, and you can subscribe to updates by email or SMS. Your files "
            "stay on your devices and keep working offline; changes sync when the service is "
            "back. For every major incident we publish a post-incident report within 5 "
            "business days.",
        ),
    ],
}


def _normalized_zip(raw: bytes) -> bytes:
    """Rewrite a DOCX with fixed timestamps so that the bytes are reproducible."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(raw)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=(2024, 6, 1, 9, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            dst.writestr(fixed, src.read(info.filename), compresslevel=9)
    return out.getvalue()


def build_docx(blocks: list[Block]) -> bytes:
    import docx

    document = docx.Document()
    props = document.core_properties
    props.author = props.last_modified_by = AUTHOR
    props.created = props.modified = FIXED_DATE
    props.revision = 1
    for kind, content in blocks:
        if kind == "table":
            assert isinstance(content, list)
            table = document.add_table(rows=0, cols=len(content[0]))
            table.style = "Table Grid"
            for row in content:
                for cell, text in zip(table.add_row().cells, row, strict=True):
                    cell.text = text
            continue
        assert isinstance(content, str)
        if kind == "title":
            props.title = content
            document.add_heading(content, level=0)
        elif kind == "h1":
            document.add_heading(content, level=1)
        elif kind == "li":
            document.add_paragraph(content, style="List Bullet")
        else:
            document.add_paragraph(content)
    raw = io.BytesIO()
    document.save(raw)
    return _normalized_zip(raw.getvalue())


def build_pdf(blocks: list[Block]) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    class OutlinedDoc(SimpleDocTemplate):  # type: ignore[misc]
        """Adds a PDF outline (bookmark) entry for each heading."""

        def afterFlowable(self, flowable: object) -> None:
            if isinstance(flowable, Paragraph) and flowable.style.name in levels:
                key = f"h{id(flowable)}"
                self.canv.bookmarkPage(key)
                self.canv.addOutlineEntry(
                    flowable.getPlainText(), key, level=levels[flowable.style.name]
                )

    styles = getSampleStyleSheet()
    levels = {"Title": 0, "Heading2": 1}
    title = str(blocks[0][1])
    story: list[object] = []
    for kind, content in blocks:
        if kind == "table":
            assert isinstance(content, list)
            table = Table(content, hAlign="LEFT")
            table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.grey)]))
            story += [table, Spacer(1, 8)]
            continue
        assert isinstance(content, str)
        text = escape(content)
        if kind == "title":
            story.append(Paragraph(text, styles["Title"]))
        elif kind == "h1":
            story.append(Paragraph(text, styles["Heading2"]))
        elif kind == "li":
            story.append(Paragraph(text, styles["Normal"], bulletText="•"))
        else:
            story.append(Paragraph(text, styles["BodyText"]))
    out = io.BytesIO()
    doc = OutlinedDoc(out, pagesize=A4, title=title, author=AUTHOR, invariant=1, pageCompression=1)
    doc.build(story)
    return out.getvalue()


def write_all(out_dir: Path) -> list[dict[str, object]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    titles = dict(TEXT_ARTICLES)
    if out_dir.resolve() != DEMO_DIR:
        for name in TEXT_ARTICLES:  # the hand-written articles live in the package folder
            (out_dir / name).write_bytes((DEMO_DIR / name).read_bytes())
    for name, blocks in DOCX_ARTICLES.items():
        (out_dir / name).write_bytes(build_docx(blocks))
        titles[name] = str(blocks[0][1])
    for name, blocks in PDF_ARTICLES.items():
        (out_dir / name).write_bytes(build_pdf(blocks))
        titles[name] = str(blocks[0][1])
    documents: list[dict[str, object]] = []
    for name in sorted(titles):
        data = (out_dir / name).read_bytes()
        documents.append(
            {
                "file": name,
                "title": titles[name],
                "format": FORMATS[Path(name).suffix],
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    manifest = {
        "company": "Kestrel Vault (fictional)",
        "description": "Help centre articles of a fictional cloud storage company, for demos.",
        "documents": documents,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEMO_DIR)
    args = parser.parse_args()
    documents = write_all(args.out)
    total = sum(int(str(d["bytes"])) for d in documents)
    print(f"wrote {len(documents)} documents ({total / 1024:.0f} KiB) to {args.out}")


if __name__ == "__main__":
    main()
