"""The admin page in a real headless Chromium (Debian's), driven by Playwright: log in, see the
workers, generate a reply, change a chat's chance, see the approval of the replies. A screenshot
is kept in test-artifacts/."""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy import delete
from sqlalchemy.orm import Session

from shared.db import make_engine
from shared.db.models import BotReply, ChatSettings

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOKEN = "page-test-token-1b7e"
# Without these Chromium keeps trying to reach Google's hosts, which this network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="Chromium is not installed (apt-get install chromium; `make test` does it as root)",
)


@pytest.fixture(scope="module")
def page_gateway(start_gateway, worker):
    return start_gateway({"ADMIN_TOKEN": TOKEN})


@pytest.fixture(scope="module")
def chat_row(database_url):
    engine = make_engine(database_url)
    with Session(engine) as db:
        db.execute(delete(ChatSettings).where(ChatSettings.chat_id == -4242))
        db.execute(delete(BotReply).where(BotReply.chat_id == -4242))
        db.add(ChatSettings(chat_id=-4242, title="Тестовая конфа", chat_type="group", reply_chance=0.1))
        db.flush()
        # Two replies of a model version of its own, with the counts the bot keeps: approval 3/4.
        for message_id, reactions in ((1, {"👍": 2, "🤔": 1}), (2, {"🔥": 1, "👎": 1})):
            likes = sum(n for k, n in reactions.items() if k in ("👍", "🔥"))
            dislikes = reactions.get("👎", 0)
            db.add(
                BotReply(
                    chat_id=-4242,
                    message_id=message_id,
                    job_id="j",
                    model_version="page-test-version",
                    reactions=reactions,
                    likes=likes,
                    dislikes=dislikes,
                )
            )
        db.commit()
    yield engine
    engine.dispose()


def test_admin_page_login_workers_generate_and_change_chance(page_gateway, chat_row, artifacts_dir):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.goto(page_gateway.base_url + "/admin/")
            expect(page.locator("#login")).to_be_visible()

            page.fill("#token", "wrong-token")
            page.click("#login-form button")
            expect(page.locator("#error")).to_contain_text("Неверный токен")

            page.fill("#token", TOKEN)
            page.click("#login-form button")
            expect(page.locator('#workers tr[data-worker="shared@test"]')).to_contain_text("онлайн")
            expect(page.locator("#workers-online")).to_have_text("1")

            page.fill("#prompt", "привет, анон")
            page.click("#generate")
            expect(page.locator("#reply")).not_to_have_text("…", timeout=30_000)
            expect(page.locator("#reply")).not_to_be_empty()
            expect(page.locator("#gen-meta")).to_contain_text("мс")
            # The reply was chosen among the worker's candidates: the choice is listed (refreshed every 5 s).
            expect(page.locator("#choices tbody tr").first).to_contain_text(
                page.locator("#reply").inner_text(), timeout=15_000
            )

            row = page.locator('#chats tr[data-chat="-4242"]')
            expect(row).to_contain_text("Тестовая конфа")
            expect(row).to_contain_text("активен")
            row.locator('input[name="chance"]').fill("0.35")
            row.locator('select[name="tone"]').select_option("sharp")
            row.locator("button").click()
            expect(row.locator("button")).to_have_text("Сохранено")
            version = page.locator('#feedback-models tr[data-key="page-test-version"]')
            expect(version).to_contain_text("75%")
            expect(version).to_contain_text("👍 2")
            expect(page.locator("#feedback-chats tbody")).to_contain_text("Тестовая конфа (-4242)")
            page.screenshot(path=str(artifacts_dir / "admin-page.png"), full_page=True)
        finally:
            browser.close()

    with Session(chat_row) as db:
        chat = db.get(ChatSettings, -4242)
        assert chat.reply_chance == pytest.approx(0.35) and chat.tone == "sharp"
