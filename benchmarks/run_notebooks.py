"""Execute chapters top to bottom in place, save them with their outputs, and record how
long each took.

    python benchmarks/run_notebooks.py                      # every chapter
    python benchmarks/run_notebooks.py notebooks/01_resnet.ipynb
    NETS_DEVICE=cuda python benchmarks/run_notebooks.py --output-dir gpu_run   # copies, e.g. on a GPU

The kernel is the Python running this script (as for ``pytest --nbval-current-env``), the
working directory is the notebook's folder, and timings go to
``benchmarks/results/notebook_times.md``. Run it on a quiet machine: the times are what the
README and the chapters quote.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "notebook_times.md"
HEADER = ["notebook", "seconds", "load before", "torch", "measured"]


def collapse_streams(nb) -> None:
    """Store what a reader saw: consecutive stream outputs of one cell are joined and each
    line keeps only the text after its last carriage return, so a progress bar is saved
    as its final state rather than as every update."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        merged = []
        for output in cell.outputs:
            if (output.output_type == "stream" and merged and merged[-1].output_type == "stream"
                    and merged[-1].name == output.name):
                merged[-1].text += output.text
            else:
                merged.append(output)
        for output in merged:
            if output.output_type == "stream":
                lines = output.text.split("\n")
                output.text = "\n".join(line.rstrip("\r").split("\r")[-1] for line in lines)
        cell.outputs = merged


def execute(path: Path, timeout: int = 1800, output: Path | None = None) -> float:
    """Execute ``path`` and save it with its outputs to ``output`` (default: in place)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    collapse_streams(nb)
    nbformat.write(nb, output or path)
    return seconds


def record(rows: dict) -> None:
    existing = {}
    if RESULTS.exists():
        for line in RESULTS.read_text().splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) == len(HEADER) and cells[0].endswith(".ipynb"):
                existing[cells[0]] = cells
    existing.update(rows)
    lines = [
        "# Chapter execution times",
        "",
        "Written by `benchmarks/run_notebooks.py`: wall-clock seconds to execute each chapter",
        f"top to bottom on {platform.machine()} with {os.cpu_count()} CPU cores, no GPU "
        "(load before: the 1-minute load average when the run started).",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(cells) + " |" for _, cells in sorted(existing.items())]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="save the executed copies and their times here instead (the stored "
                             "chapters and notebook_times.md stay as they are), e.g. for a GPU check")
    args = parser.parse_args()
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    rows = {}
    for path in paths:
        path = path.resolve()
        load = os.getloadavg()[0]          # a busy machine makes the time meaningless
        output = None
        if args.output_dir is not None:
            args.output_dir.mkdir(parents=True, exist_ok=True)
            output = args.output_dir / path.name
        seconds = execute(path, output=output)
        name = str(path.relative_to(ROOT))
        rows[name] = [name, f"{seconds:.0f}", f"{load:.2f}", torch.__version__,
                      dt.date.today().isoformat()]
        print(f"{name}: {seconds:.1f} s", flush=True)
    if args.output_dir is None:
        record(rows)
    else:
        lines = [f"| {cells[0]} | {cells[1]} |" for cells in rows.values()]
        (args.output_dir / "times.md").write_text("| notebook | seconds |\n|---|---|\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
