"""The web page at / in a real headless chromium (Debian's, driven by Playwright; nothing is downloaded)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import missing_component


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")
    exe = _chromium()
    if exe is None:
        missing_component("no chromium installed: apt-get install chromium")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, headless=True,
                               args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield b
        b.close()


def test_page_attributes_an_issued_models_image_and_reports_clean_photos_and_errors(browser, server, models,
                                                                                  tmp_path):
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    outside: list[str] = []
    page.on("request", lambda req: None if req.url.startswith(server.url) or req.url.startswith(("blob:", "data:"))
            else outside.append(req.url))
    page.goto(server.url + "/")
    page.wait_for_selector("#limits:has-text('MB')")
    text = tmp_path / "notes.txt"
    text.write_text("this is not an image")
    files = [models["alice_images"][0], models["photos"][0], text]
    page.set_input_files("#files", [str(f) for f in files])
    page.wait_for_selector("#status:has-text('done: 3')", timeout=60_000)
    rows = page.locator("#results tbody tr")
    assert rows.count() == 3
    cells = [rows.nth(i).locator("td").all_inner_texts() for i in range(3)]
    by_file = {c[0]: c for c in cells}
    alice = by_file[files[0].name]
    day = models["issued"][0]["created"][:10]
    assert alice[1].startswith(f"made by model #1, issued to alice on {day}; p = ")
    assert alice[2] == "1" and alice[3] == "alice" and float(alice[5]) >= 0.9
    assert by_file[files[1].name][1] == "no known fingerprint found"
    assert "not an image" in by_file["notes.txt"][1]
    cards = page.locator(".card.error .verdict").all_inner_texts()
    assert any("notes.txt is not an image" in c for c in cards)
    with page.expect_download() as dl:
        page.click("#csv")
    csv = Path(dl.value.path()).read_text()
    assert csv.splitlines()[0].startswith("file,verdict,model,holder") and len(csv.splitlines()) == 4
    assert "made by model #1" in csv
    assert not outside, f"the page fetched from outside the server: {outside}"
    # GANPRINT_SCREENSHOT=docs/service-page.png refreshes the README's screenshot.
    shot = Path(os.environ.get("GANPRINT_SCREENSHOT") or tmp_path / "page.png")
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.close()


def test_page_says_when_a_file_is_too_large(browser, server, tmp_path):
    page = browser.new_page()
    page.goto(server.url + "/")
    page.wait_for_selector("#limits:has-text('MB')")
    big = tmp_path / "huge.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(2 * 2**20))  # above this server's 1 MB
    page.set_input_files("#files", str(big))
    page.wait_for_selector("#status:has-text('done: 1')", timeout=30_000)
    assert "too large" in page.locator(".card.error .verdict").inner_text()
    page.close()


def test_api_docs_render_with_nothing_from_outside_the_server(browser, server):
    pytest.importorskip("fastapi_offline", reason="the service extra: pip install 'ganprint[service]'")
    page = browser.new_page()
    outside: list[str] = []
    page.on("request", lambda req: None if req.url.startswith(server.url) or req.url.startswith(("blob:", "data:"))
            else outside.append(req.url))
    page.route(lambda url: not url.startswith(server.url), lambda route: route.abort())  # as if offline
    page.goto(server.url + "/docs")
    page.wait_for_selector(".swagger-ui .info .title:has-text('ganprint provenance service')", timeout=30_000)
    assert "/v1/attribute" in page.content()
    assert not outside, f"the docs page fetched from outside the server: {outside}"
    page.close()


def test_redoc_renders_with_nothing_from_outside_the_server(browser, server):
    pytest.importorskip("fastapi_offline", reason="the service extra: pip install 'ganprint[service]'")
    page = browser.new_page()
    sent: list[str] = []  # what the browser tried to send out of the server (a CSP-blocked load never gets here)
    failed: list[str] = []

    def outside(route):
        sent.append(route.request.url)
        route.abort()

    page.on("requestfailed", lambda req: failed.append(req.failure))
    page.route(lambda url: not url.startswith(server.url), outside)  # as if offline
    page.goto(server.url + "/redoc")
    page.wait_for_selector("h1:has-text('ganprint provenance service')", timeout=30_000)
    assert "/matches/byContent" in page.content()
    assert not sent, f"ReDoc fetched from outside the server: {sent}"
    assert set(failed) <= {"csp"}, failed  # only the vendor's logo, refused by the page's policy
    page.close()
