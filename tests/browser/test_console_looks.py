"""The console's main pages at desktop and phone width: no horizontal scrolling, every control
named, and screenshots (into ``$SYNCD_CONSOLE_SCREENSHOTS``, e.g. ``docs/console``, when set)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from browsersupport import log_in
from playwright.sync_api import expect

WIDTHS = {"desktop": 1280, "phone": 390}

UNNAMED_CONTROLS = """() => [...document.querySelectorAll('a[href], button, input:not([type=hidden]), select')]
  .filter(e => !(e.getAttribute('aria-label') || (e.labels && e.labels.length) || e.textContent.trim()))
  .map(e => e.outerHTML.slice(0, 120))"""


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    wanted = os.environ.get("SYNCD_CONSOLE_SCREENSHOTS")
    folder = Path(wanted) if wanted else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_main_pages_fit_every_width_and_name_every_control(bed, browser, shots):
    onboarding = browser.new_context(base_url=bed.url, viewport={"width": 1280, "height": 800})
    page = onboarding.new_page()
    log_in(page)
    page.screenshot(path=shots / "onboarding.png")
    onboarding.close()

    slack = bed.tb.slack
    slack.add_message(slack.ids["general"], "Thanks all, I'll post the notes here.", slack.bot_user_id)
    slack.add_message(slack.ids["general"], "Merci ! Les notes arrivent 📝", slack.ids["alice"])
    integration = bed.slack()
    chat = next(c for c in bed.run(bed.tb.daemon.store.list_chats(integration_id=integration["id"]))
                if c.name == "general")
    pages = {
        "overview": "/ui",
        "integrations": "/ui/integrations",
        "integration": f"/ui/integrations/{integration['id']}",
        "connect": "/ui/connect/slack",
        "import": f"/ui/integrations/{integration['id']}/import",
        "chats": "/ui/chats",
        "messages": f"/ui/chats/{chat.id}",
        "failures": "/ui/failures",
    }
    for width_name, width in WIDTHS.items():
        context = browser.new_context(base_url=bed.url, viewport={"width": width, "height": 900})
        context.set_default_timeout(5000)
        page = context.new_page()
        log_in(page)
        for name, path in pages.items():
            page.goto(path)
            if name == "import":
                expect(page.get_by_role("group", name="Available chats")).to_be_visible()
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at {width}px"
            assert page.evaluate(UNNAMED_CONTROLS) == [], name
            page.screenshot(path=shots / f"{name}-{width_name}.png", full_page=width_name == "phone")
        context.close()
    assert (shots / "messages-desktop.png").stat().st_size > 10_000


def test_the_console_is_usable_from_the_keyboard(bed, page):
    bed.slack()
    page.goto("/ui/login")
    page.keyboard.type("testbed-admin-token")  # the token field has the focus
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/ui$"))
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    for _ in range(4):
        page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Chats", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Chats")).to_be_visible()
