"""The project's own configuration: what a fresh machine and CI rely on."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _requirements():
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def test_requirements_admit_the_local_torch_and_pin_jupyter_book_1():
    from packaging.requirements import Requirement

    reqs = {Requirement(r).name: Requirement(r) for r in _requirements() if not r.startswith("-e")}
    assert reqs["torch"].specifier.contains("2.14.1") and reqs["torchvision"].specifier.contains("0.29.1")
    assert not reqs["jupyter-book"].specifier.contains("2.0.0")
    assert reqs["jupyter-book"].specifier.contains("1.0.4")
    assert "-e ." in _requirements()


def test_package_leaves_torch_unpinned_for_colab():
    text = (ROOT / "pyproject.toml").read_text()
    deps = re.search(r"dependencies = \[(.*?)\]", text, re.S).group(1)
    assert '"torch"' in deps and '"torchvision"' in deps


def test_book_config():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["title"] == "Neural Network Notes"
    assert config["execute"]["execute_notebooks"] == "off"
    assert config["only_build_toc_files"] is True
    assert config["repository"]["branch"] == "main"
    assert config["repository"]["url"].startswith("https://github.com/")
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert config["html"]["use_repository_button"] and config["html"]["use_issues_button"]
    assert {"_build", ".venv"} <= set(config["exclude_patterns"])
    for bib in config["bibtex_bibfiles"]:
        assert (ROOT / bib).exists()


def test_every_citation_has_a_bibtex_entry():
    bib = (ROOT / "book" / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    pages = list((ROOT / "book").glob("*.md")) + list((ROOT / "notebooks").glob("*.ipynb"))
    cited = set()
    for page in pages:
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", page.read_text()):
            cited |= {k.strip() for k in group.split(",")}
    assert cited, "no citations found"
    assert cited <= keys, f"cited but not in references.bib: {sorted(cited - keys)}"


def test_the_site_is_self_contained_and_read_in_a_browser_by_ci():
    """MathJax comes from the build, not a CDN; CI reads every page in headless chromium."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert "sphinx-mathjax-offline" in config["sphinx"]["extra_extensions"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert ".ci/browser_check.py" in ci and "chromium-driver" in ci
    names = {r.split(">")[0].split("<")[0].split("=")[0].strip() for r in _requirements()}
    assert {"selenium", "sphinx-mathjax-offline", "jupyterlab"} <= names
    assert (ROOT / "LICENSE").exists() and (ROOT / "LICENSE-TEXT.md").exists()
    assert (ROOT / "CITATION.cff").exists()
