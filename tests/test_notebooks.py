"""Static checks of the stored chapters: what nbval would silently skip and what the site
would show. (nbval itself re-executes them: `pytest` collects notebooks/ too.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MACHINE_PATH = re.compile(r"(/(root|home|tmp|work|Users|private|var/folders)/)|([A-Z]:\\\\)")


def _toc_files(node) -> list:
    files = []
    if isinstance(node, dict):
        if "file" in node:
            files.append(node["file"])
        if "root" in node:
            files.append(node["root"])
        for value in node.values():
            files += _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            files += _toc_files(item)
    return files


def _code_cells(path):
    nb = json.loads(path.read_text())
    return nb, [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def test_there_are_chapters():
    assert CHAPTERS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_every_code_cell_was_executed_in_order_without_errors(path):
    _, cells = _code_cells(path)
    counts = [c["execution_count"] for c in cells]
    assert None not in counts, f"{path.name}: {counts.count(None)} code cell(s) saved unexecuted"
    assert counts == sorted(counts) and len(set(counts)) == len(counts), \
        f"{path.name}: cells were not executed top to bottom ({counts})"
    for cell in cells:
        for output in cell["outputs"]:
            assert output["output_type"] != "error", f"{path.name}: stored error {output.get('ename')}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_plotting_chapters_choose_the_inline_backend(path):
    """A stored figure is compared by nbval; without `%matplotlib inline` whether it appears at
    all depends on the environment (MPLBACKEND=Agg, common in CI, makes plt.show() a no-op)."""
    _, cells = _code_cells(path)
    sources = ["".join(c["source"]) for c in cells]
    uses_pyplot = [i for i, src in enumerate(sources) if "matplotlib.pyplot" in src]
    if not uses_pyplot:
        pytest.skip(f"{path.name} does not plot")
    magic = [i for i, src in enumerate(sources) if re.search(r"^%matplotlib inline$", src, re.M)]
    assert magic and magic[0] <= uses_pyplot[0], \
        f"{path.name}: put `%matplotlib inline` in the cell that imports pyplot"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_no_output_shows_a_machine_path(path):
    _, cells = _code_cells(path)
    for cell in cells:
        for output in cell["outputs"]:
            text = json.dumps({k: v for k, v in output.items() if k != "data"}) + json.dumps(
                {k: v for k, v in output.get("data", {}).items() if not k.startswith("image/")})
            match = MACHINE_PATH.search(text)
            assert match is None, f"{path.name}: an output shows a machine path near {text[max(0, match.start()-60):match.end()+60]!r}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_first_code_cell_installs_nets_from_the_repository_in_colab(path):
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = config["repository"]["url"]
    branch = config["repository"]["branch"]
    nb, cells = _code_cells(path)
    first = "".join(cells[0]["source"])
    assert '"google.colab" in sys.modules' in first
    assert re.search(r"%pip install .*git\+" + re.escape(url) + "@" + re.escape(branch), first), first
    tags = cells[0].get("metadata", {}).get("tags", [])
    assert "nbval-ignore-output" in tags
    assert "hide-cell" in tags   # collapsed on the site, where it is noise; it stays in the notebook
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapters_that_read_stored_results_fetch_them_in_colab(path):
    """A cell that plots a committed script's stored results reads them from ../benchmarks/;
    in Colab only the notebook is there, so the setup cell must clone the repository and
    work from its notebooks/ folder."""
    _, cells = _code_cells(path)
    sources = ["".join(c["source"]) for c in cells]
    if not any("benchmarks" in src for src in sources[1:]):
        pytest.skip(f"{path.name} reads no stored results")
    first = sources[0]
    assert "git clone" in first and re.search(r"%cd .*/notebooks", first), first


def test_toc_lists_every_chapter_and_every_toc_file_exists():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = _toc_files(toc)
    for name in files:
        assert any((ROOT / f"{name}{ext}").exists() for ext in ("", ".md", ".ipynb")), f"{name} in _toc.yml does not exist"
    for path in CHAPTERS:
        assert str(path.relative_to(ROOT).with_suffix("")) in files, f"{path.name} is not in _toc.yml"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapters_import_models_from_nets(path):
    """Chapters must not carry their own copy of a book model."""
    _, cells = _code_cells(path)
    source = "\n".join("".join(c["source"]) for c in cells)
    assert "import nets" in source
    for model in ("class ResNet", "class BasicBlock(", "class Bottleneck(", "class UNet", "class MobileNet",
                  "class ShuffleNet", "class SqueezeExcitation", "class CBAM", "class MultiHeadAttention",
                  "class BatchNorm2d"):
        assert model not in source, f"{path.name} defines {model!r}; import it from nets instead"
