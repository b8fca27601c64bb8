"""Refresh docs/gradio_demo.png: the demo on the embedded toy models, one Search over Paths run, through
Debian's chromium (playwright, no browser download).

    python docs/screenshot_demo.py docs/gradio_demo.png
"""

import os
import sys

from playwright.sync_api import sync_playwright

from gradio_app.app import build_demo

ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def main(path: str) -> None:
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    demo = build_demo()
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url)
            page.locator("#prompt textarea").fill("two red circles")
            page.locator("#generate").click()
            page.locator("#gallery img").first.wait_for(timeout=180_000)
            page.locator("#plot img").first.wait_for(timeout=60_000)
            page.wait_for_timeout(1000)
            page.screenshot(path=path, full_page=True)
            browser.close()
    finally:
        demo.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/gradio_demo.png")
