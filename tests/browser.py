"""Headless Chromium for the report tests and docs/images/report.png: Debian's `chromium` and
`chromium-driver` packages driven by Selenium, with nothing downloaded (no Selenium Manager)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

# Every drawing on the page: its id and its box (a drawing that failed to render has none).
SVG_BOXES = """
return Array.from(document.querySelectorAll('main svg')).map(s => {
    const r = s.getBoundingClientRect(); return [s.id, r.width, r.height];
});
"""


def available() -> bool:
    return Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()


def chromium(width: int = 1280, height: int = 900):
    """A headless Chromium that records the console (read it with ``driver.get_log("browser")``)."""
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not fetch a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"):
        opts.add_argument(arg)
    opts.add_argument(f"--window-size={width},{height}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
