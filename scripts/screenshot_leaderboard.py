#!/usr/bin/env python3
"""Screenshot an HTML leaderboard with the system Chromium (Debian `chromium`) driven by playwright.

Usage: python scripts/screenshot_leaderboard.py PAGE.html OUT.png [--width 1280] [--height 1500] [--dark] [--full]
       [--selector CSS]  (only that element of the page, e.g. "#paired")
Needs the `test` extra (playwright) and /usr/bin/chromium; never runs `playwright install`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("page", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=1500)
    ap.add_argument("--dark", action="store_true", help="emulate prefers-color-scheme: dark")
    ap.add_argument("--full", action="store_true", help="the whole page, not just the first screen")
    ap.add_argument("--selector", help="screenshot only the first element matching this CSS selector")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": args.width, "height": args.height},
                                    color_scheme="dark" if args.dark else "light")
            page.goto(args.page.resolve().as_uri(), wait_until="load")
            if args.selector:  # the element with a 16 px margin of the page around it
                box = page.locator(args.selector).first.bounding_box()
                page.screenshot(path=str(args.out), full_page=True, clip={
                    "x": max(box["x"] - 16, 0), "y": max(box["y"] - 16, 0),
                    "width": box["width"] + 32, "height": box["height"] + 32})
            else:
                page.screenshot(path=str(args.out), full_page=args.full)
        finally:
            browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
