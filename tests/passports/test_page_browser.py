"""The passport page in a real browser (Debian chromium via Playwright): readable, labelled, navigable."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def test_passport_page_in_chromium(browser: Browser, client: httpx.Client, passport: dict[str, Any]) -> None:
    passport["generalProductInformation"]["manufacturerInformation"]["name"] = "<script>alert(1)</script> Cells"
    created = client.post("/api/v1/dpps", json=passport)
    assert created.status_code == 201, created.text
    dpp = created.json()["dppId"]
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone screen
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    response = page.goto(f"{client.base_url}/api/v1/dpps/{dpp}")
    assert response is not None and response.status == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<script>alert(1)</script> Cells" in page.locator("h1").inner_text()  # shown as text, not run
    assert dialogs == []
    assert page.get_by_role("heading", name="Carbon footprint").is_visible()
    assert page.get_by_role("heading", name="Performance and durability").is_visible()
    rated = passport["performanceAndDurability"]["ratedCapacity"]
    row = page.get_by_role("row", name=re.compile(r"^Rated capacity public"))
    assert f"{rated:g}" in row.inner_text().replace(".0 ", " ") or str(rated) in row.inner_text()
    assert "Ah" in row.inner_text()
    # keyboard navigation: the section index is reachable with Tab and jumps to the section
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused.strip() == "General battery and manufacturer information", focused
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == "#generalProductInformation"
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")  # no sideways scroll
    page.close()
