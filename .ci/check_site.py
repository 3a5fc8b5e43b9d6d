"""After the book build: index.html leads to the front page, which links every page of _toc.yml."""

import os
import sys
from pathlib import Path

import yaml

root = Path(__file__).resolve().parents[1]
html = root / "_build" / "html"
toc = yaml.safe_load((root / "_toc.yml").read_text())
front = toc["root"]
pages = [c["file"] for part in toc["parts"] for c in part["chapters"]]

if f"{front}.html" not in (html / "index.html").read_text():
    sys.exit(f"_build/html/index.html does not lead to {front}.html")
front_html = (html / f"{front}.html").read_text()
missing = [p for p in pages
           if not (html / f"{p}.html").exists()
           or f'href="{os.path.relpath(p, os.path.dirname(front))}.html"' not in front_html]
if missing:
    sys.exit(f"pages of _toc.yml not built or not linked from {front}.html: {missing}")
print(f"site ok: index.html -> {front}.html, which links all {len(pages)} other pages of _toc.yml")
