"""Read the built site the way a reader does: in a real browser, with no network.

Serves ``_build/html`` on localhost and drives Debian's headless Chromium through Selenium
(Debian's ``chromium-driver``; no browser download). The browser's network is blocked: a
proxy that does not exist for every host but localhost, and a host resolver that resolves
nothing else. Navigation follows the theme's "next" links from ``index.html``, so it reaches
the pages the way a reader clicking through does, and must meet every page of ``_toc.yml``
in order. On every page:

* no console error (a failed request is one);
* no request for anything outside localhost (``data:``/``blob:`` URLs are local);
* every image loaded (complete, with a non-zero natural size), after scrolling through the
  page so lazy images load too;
* no stored traceback or warning visible in an output;
* on pages with math, MathJax has typeset it (``mjx-container`` elements, no MathJax error
  node) and no raw TeX (``$$``, ``\\frac``, ``\\(``...) is left in the text outside code;
* on chapter pages (``notebooks/``), a Colab link to that chapter's notebook on ``main``.

Screenshots of every page (in tiles of one screen each) go to ``_build/screenshots/``.

    .venv/bin/python .ci/browser_check.py            # after jupyter-book build
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import re
import shutil
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import yaml
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
WIDTH, TILE = 1280, 1600

RAW_TEX = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\(frac|begin|end|mathbf|mathrm|sum|sqrt|left|right|cdot)\b")
# an unhandled error's traceback, or a warning as the warnings module prints it (with the
# file and line that raised it); the chapters' pitfall cells print caught errors on purpose
ALERT_TEXT = re.compile(r"Traceback \(most recent call last\)|\.py:\d+: \w*Warning")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the CI log for findings
        pass


def serve() -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(HTML)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def browser() -> webdriver.Chrome:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        sys.exit("browser check: Debian's chromium and chromium-driver are needed "
                 "(apt-get install -y chromium chromium-driver)")
    opts = Options()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={WIDTH},900", "--hide-scrollbars",
                # the network is blocked for the browser: every host but localhost goes to a
                # proxy that is not there, and resolves to nothing
                "--proxy-server=http://127.0.0.1:9",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-default-apps"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=opts)


def requests_made(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def leaves_localhost(url: str) -> bool:
    parts = urlparse(url)
    if parts.scheme in ("data", "blob", "about"):
        return False
    return parts.hostname not in ("127.0.0.1", "localhost")


def settle(driver) -> None:
    """Wait for the page, scroll through it (lazy images), wait for images and MathJax."""
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    for y in range(0, height + 900, 900):
        driver.execute_script("window.scrollTo(0, arguments[0])", y)
    driver.execute_script("window.scrollTo(0, 0)")
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        "return [...document.images].every(i => i.complete)"))
    if driver.find_elements(By.CSS_SELECTOR, ".math"):
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(
            "return !!(window.MathJax && MathJax.startup && MathJax.startup.promise)"))
        driver.set_script_timeout(60)
        driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "MathJax.startup.promise.then(() => done(true), e => done(String(e)));")


def check_page(driver, page: str, colab_base: str) -> list[str]:
    problems = []
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    problems += [f"console error: {m}" for m in errors]
    problems += [f"request leaves localhost: {u}" for u in requests_made(driver) if leaves_localhost(u)]
    broken = driver.execute_script(
        "return [...document.images].filter(i => !i.complete || i.naturalWidth === 0)"
        ".map(i => i.getAttribute('src'))")
    problems += [f"image not loaded: {src}" for src in broken]
    stored_errors = driver.find_elements(By.CSS_SELECTOR, ".output.traceback, .output.error")
    problems += [f"a stored error output is shown: {e.text[:120]!r}" for e in stored_errors]
    outputs = driver.execute_script(
        "return [...document.querySelectorAll('.cell_output, .output')]"
        ".map(o => o.innerText).join('\\n')")
    for match in ALERT_TEXT.finditer(outputs):
        start = max(0, match.start() - 60)
        problems.append(f"error or warning in an output: ...{outputs[start:match.end() + 60]!r}")
    if driver.find_elements(By.CSS_SELECTOR, ".math"):
        typeset = driver.execute_script("return document.querySelectorAll('mjx-container').length")
        if not typeset:
            problems.append("the page has math but MathJax typeset none of it")
        if driver.find_elements(By.CSS_SELECTOR, "mjx-merror, [data-mjx-error]"):
            problems.append("MathJax reported an error in a formula")
    text = driver.execute_script(
        "const body = document.querySelector('main') || document.body;"
        "const copy = body.cloneNode(true);"
        "copy.querySelectorAll('pre, code, script, style, mjx-container, .highlight, textarea')"
        ".forEach(n => n.remove());"
        "return copy.textContent;")
    for match in RAW_TEX.finditer(text):
        start = max(0, match.start() - 40)
        problems.append(f"raw TeX in the text: ...{text[start:match.end() + 40]!r}")
        break
    if page.startswith("notebooks/"):
        want = f"{colab_base}/blob/main/{page}.ipynb"
        links = driver.execute_script(
            "return [...document.querySelectorAll('a')].map(a => a.href)"
            ".filter(h => h.startsWith('https://colab.research.google.com/'))")
        if want not in links:
            problems.append(f"no Colab link to {want} (found {links})")
    return problems


def screenshots(driver, page: str) -> int:
    folder = SHOTS / page.replace("/", "__")
    folder.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    tiles = 0
    for y in range(0, height, TILE):
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": y, "width": WIDTH, "height": min(TILE, height - y), "scale": 1}})
        (folder / f"{tiles:02d}.png").write_bytes(base64.b64decode(shot["data"]))
        tiles += 1
    return tiles


def main() -> int:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    repo = urlparse(config["repository"]["url"]).path.strip("/")
    colab_base = f"https://colab.research.google.com/github/{repo}"
    if SHOTS.exists():
        shutil.rmtree(SHOTS)

    server = serve()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    driver = browser()
    failures: dict[str, list[str]] = {}
    visited: list[str] = []
    try:
        driver.get(base + "index.html")
        while True:
            settle(driver)
            page = driver.current_url[len(base):].split("#")[0].removesuffix(".html")
            if page in visited:
                failures.setdefault(page, []).append("the 'next' links loop back to this page")
                break
            visited.append(page)
            problems = check_page(driver, page, colab_base)
            tiles = screenshots(driver, page)
            print(f"{'ok  ' if not problems else 'FAIL'} {page}  ({tiles} screenshot tiles)")
            if problems:
                failures[page] = problems
            nxt = driver.find_elements(By.CSS_SELECTOR, "a.right-next")
            if not nxt:
                break
            driver.get(nxt[0].get_attribute("href"))
    finally:
        driver.quit()
        server.shutdown()

    if visited != pages:
        failures["navigation"] = [f"following 'next' from index.html visited {visited}, "
                                  f"_toc.yml lists {pages}"]
    for page, problems in failures.items():
        print(f"\n{page}:")
        for p in problems:
            print(f"  - {p}")
    if failures:
        print(f"\nbrowser check FAILED on {len(failures)} page(s)")
        return 1
    print(f"browser check ok: {len(visited)} pages in TOC order, screenshots in "
          f"{SHOTS.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
