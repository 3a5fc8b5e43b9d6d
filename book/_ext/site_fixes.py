"""Small fixes to the pages Jupyter Book 1 writes, found by the browser check (.ci/browser_check.py).

* **Each script once.** With jupyter-book 1.0.4, sphinx-thebe 0.3.1 and Sphinx 7.4, every page
  carries sphinx-thebe's inline ``const THEBE_JS_URL = ...`` script twice, and the browser
  reports "Identifier 'THEBE_JS_URL' has already been declared" on every page. This drops
  repeated script entries (same file or same inline body, same attributes) before the page
  is rendered; sphinx-togglebutton's inline script was doubled too.
"""

from __future__ import annotations


def _key(script) -> tuple:
    """What the browser sees of a script: its file and attributes (an inline script's body
    is an attribute). The repeated inline scripts pass Sphinx's own duplicate check
    because one copy is named ``None`` and the other ``''``: both mean "no file"."""
    attributes = getattr(script, "attributes", {}) or {}
    return (getattr(script, "filename", str(script)) or "",
            tuple(sorted((k, str(v)) for k, v in attributes.items())))


def drop_repeated_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = _key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", drop_repeated_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
