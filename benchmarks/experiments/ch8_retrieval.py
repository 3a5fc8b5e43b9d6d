"""Chapter 8's task that needs attention: retrieve the value paired with a query key.

Each example is a set of ``PAIRS`` (key, value) pairs (distinct keys drawn from ``KEYS``
symbols, values from ``VALUES`` symbols) and a query that is one of the keys; the target is
that key's value. Chance is 1 / VALUES. Both arms embed the tokens the same way (a pair is
key embedding + value embedding, the query is its key embedding) and differ only in how the
answer is read out:

* ``attention``: one cross-attention (``nets.MultiHeadAttention``, query = the query token,
  keys and values = the pair tokens), then a linear classifier;
* ``mlp``: the pair tokens and the query token concatenated, then a 2-hidden-layer MLP, with
  more parameters than the attention arm (asserted below).

Training: AdamW (weight decay 0.01), ``OneCycleLR`` to the peak rate over ``STEPS`` steps,
batch ``BATCH`` from a fixed training set of ``TRAIN`` examples, trained with ``nets.fit``;
accuracy on ``TEST`` held-out examples. The sweep gives each arm each rate of ``LRS`` with
``SEEDS`` seeds; each arm's best rate is the one with the highest mean test accuracy, ties
broken towards the *larger* rate (a rate that already reaches the ceiling at this budget
learns fastest, which matters at shorter budgets).

Two controls answer "the MLP is just too small / too briefly trained":

* ``mlp-wide``: the MLP with ``WIDE_HIDDEN`` hidden units (about 6x the MLP arm's parameters), its own
  rate sweep over ``LRS`` with ``WIDE_SEEDS``;
* the same at its best rate with ``LONG_FACTOR`` times the steps (stored as arm ``mlp-wide``
  with ``steps`` = ``LONG_FACTOR * STEPS``).

The query-blind baseline, the expected accuracy of answering the most frequent value among the
``PAIRS`` values without looking at the query, is computed on the test set and stored.

    OMP_NUM_THREADS=1 python benchmarks/experiments/ch8_retrieval.py           # about 8 minutes
    OMP_NUM_THREADS=1 python benchmarks/experiments/ch8_retrieval.py --reuse   # keep the stored
        # runs of the base sweep (deterministic at one thread) and run only what is missing

writes ``results/ch8_retrieval.json`` (every run), ``.md`` (the table) and ``.png``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import nets
from nets.attention import MultiHeadAttention, sinusoidal_position_encoding

KEYS, VALUES, PAIRS, DIM = 16, 16, 8, 32
TRAIN, TEST, BATCH, STEPS = 20_000, 2_000, 128, 600
LRS = (1e-3, 3e-3, 1e-2, 3e-2)
SEEDS = (0, 1, 2, 3, 4)
WIDE_HIDDEN, WIDE_SEEDS, LONG_FACTOR = 256, (0, 1, 2), 5
RESULTS = Path(__file__).parent / "results"


def make_data(n: int, seed: int):
    """``(inputs (n, 2·PAIRS + 1) int64, targets (n,))``: columns are the PAIRS keys, the
    PAIRS values, then the query key."""
    g = torch.Generator().manual_seed(seed)
    keys = torch.rand(n, KEYS, generator=g).argsort(dim=1)[:, :PAIRS]  # distinct keys per example
    values = torch.randint(VALUES, (n, PAIRS), generator=g)
    which = torch.randint(PAIRS, (n,), generator=g)
    query = keys.gather(1, which[:, None])
    target = values.gather(1, which[:, None]).squeeze(1)
    return torch.cat((keys, values, query), dim=1), target


class Embed(nn.Module):
    """Tokens of one example: pair tokens (B, PAIRS, DIM) and the query token (B, 1, DIM)."""

    def __init__(self) -> None:
        super().__init__()
        self.key = nn.Embedding(KEYS, DIM)
        self.value = nn.Embedding(VALUES, DIM)

    def forward(self, x):
        keys, values, query = x[:, :PAIRS], x[:, PAIRS:2 * PAIRS], x[:, 2 * PAIRS:]
        return self.key(keys) + self.value(values), self.key(query)


class AttentionReader(nn.Module):
    """Query token attends over the pair tokens; ``self.weights`` (B, heads, 1, PAIRS) keeps
    the last attention weights."""

    def __init__(self, num_heads: int = 1) -> None:
        super().__init__()
        self.embed = Embed()
        self.attn = MultiHeadAttention(DIM, num_heads)
        self.head = nn.Linear(DIM, VALUES)
        self.weights = None

    def forward(self, x):
        pairs, query = self.embed(x)
        out, weights = self.attn(query, pairs, pairs)  # (B, 1, DIM), (B, heads, 1, PAIRS)
        self.weights = weights.detach()
        return self.head(out.squeeze(1))


class MLPReader(nn.Module):
    """The same tokens, concatenated, read by an MLP (no attention)."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.embed = Embed()
        self.mlp = nn.Sequential(nn.Linear((PAIRS + 1) * DIM, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, VALUES))

    def forward(self, x):
        pairs, query = self.embed(x)
        return self.mlp(torch.cat((pairs, query), dim=1).flatten(1))


ARMS = {"attention": AttentionReader, "mlp": MLPReader}


def wide_mlp() -> MLPReader:
    return MLPReader(hidden=WIDE_HIDDEN)


CONTROLS = {"mlp-wide": wide_mlp}  # the wider MLP of the controls (not part of ARMS)


def query_blind_accuracy(x) -> float:
    """Expected accuracy of a reader that ignores the query and answers the most frequent of
    the ``PAIRS`` values of each example (ties broken at random): mean of max count / PAIRS."""
    values = x[:, PAIRS:2 * PAIRS]
    counts = torch.stack([(values == v).sum(1) for v in range(VALUES)], 1)  # (N, VALUES)
    return (counts.amax(1) / PAIRS).float().mean().item()


class SlotReader(nn.Module):
    """For the order task of chapter 8, section 5: return the value of the pair in slot ``SLOT``.

    A learned query vector attends over the pair tokens, with or without the sinusoidal position
    encoding added to them. Without it the reader is a function of the *set* of pairs and cannot
    tell which pair sits in slot ``SLOT``."""

    def __init__(self, positions: bool) -> None:
        super().__init__()
        self.embed = Embed()
        self.query = nn.Parameter(torch.randn(1, 1, DIM))
        self.attn = MultiHeadAttention(DIM, 1)
        self.head = nn.Linear(DIM, VALUES)
        pe = sinusoidal_position_encoding(PAIRS, DIM) if positions else torch.zeros(PAIRS, DIM)
        self.register_buffer("pe", pe)

    def forward(self, x):
        pairs, _ = self.embed(x)
        pairs = pairs + self.pe  # (B, PAIRS, DIM)
        out, _ = self.attn(self.query.expand(len(x), -1, -1), pairs, pairs)
        return self.head(out.squeeze(1))


SLOT = 3


def slot_data(n: int, seed: int):
    """The retrieval inputs with the value in slot ``SLOT`` as the target."""
    x, _ = make_data(n, seed)
    return x, x[:, PAIRS + SLOT]


def train_slot(positions: bool, lr: float, seed: int, steps: int = STEPS):
    """Train a :class:`SlotReader`; returns ``(model, test accuracy)``. Same recipe as :func:`train`."""
    train_set = TensorDataset(*slot_data(TRAIN, seed=1000 + seed))
    test_loader = DataLoader(TensorDataset(*slot_data(TEST, seed=99_999)), batch_size=500)
    generator = nets.seed_everything(seed)
    model = SlotReader(positions)
    loader = DataLoader(train_set, batch_size=BATCH, shuffle=True, generator=generator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    nets.fit(model, loader, epochs=-(-steps // len(loader)), max_steps=steps, optimizer=optimizer,
             scheduler=schedule, device=torch.device("cpu"), quiet=True)
    return model, nets.evaluate(model, test_loader)["metric"]


def train(arm: str, lr: float, seed: int, steps: int = STEPS, train_size: int = TRAIN):
    """Train one arm; returns ``(model, test accuracy, seconds)``."""
    train_set = TensorDataset(*make_data(train_size, seed=1000 + seed))
    test_loader = DataLoader(TensorDataset(*make_data(TEST, seed=99_999)), batch_size=500)
    generator = nets.seed_everything(seed)
    model = (ARMS | CONTROLS)[arm]()
    loader = DataLoader(train_set, batch_size=BATCH, shuffle=True, generator=generator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    start = time.perf_counter()
    nets.fit(model, loader, epochs=-(-steps // len(loader)), max_steps=steps, optimizer=optimizer,
             scheduler=schedule, device=torch.device("cpu"), quiet=True)
    seconds = time.perf_counter() - start
    return model, nets.evaluate(model, test_loader)["metric"], seconds


def best_lr(runs, arm: str, steps: int = STEPS) -> float:
    """The rate with the highest mean accuracy; ties go to the larger rate."""
    means = {lr: statistics.mean(r["accuracy"] for r in runs
                                 if r["arm"] == arm and r["lr"] == lr and r.get("steps", STEPS) == steps)
             for lr in LRS}
    return max(means, key=lambda lr: (means[lr], lr))


def main() -> None:
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reuse", action="store_true", help="keep stored runs with the same (arm, lr, seed, steps)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = {arm: nets.count_params(build()) for arm, build in (ARMS | CONTROLS).items()}
    assert params["mlp"] >= params["attention"], params
    old = {}
    if args.reuse and (RESULTS / "ch8_retrieval.json").exists():
        for r in json.loads((RESULTS / "ch8_retrieval.json").read_text())["runs"]:
            old[r["arm"], r["lr"], r["seed"], r.get("steps", STEPS)] = r
    runs = []

    def run(arm, lr, seed, steps):
        if (arm, lr, seed, steps) in old:
            r = dict(old[arm, lr, seed, steps], steps=steps)
            print(f"{arm:13s} lr={lr:g} seed={seed} steps={steps} accuracy={r['accuracy']:.3f} (stored)", flush=True)
        else:
            _, acc, seconds = train(arm, lr, seed, steps=steps)
            r = dict(arm=arm, lr=lr, seed=seed, steps=steps, accuracy=acc, seconds=round(seconds, 2))
            print(f"{arm:13s} lr={lr:g} seed={seed} steps={steps} accuracy={acc:.3f} ({seconds:.1f} s)", flush=True)
        runs.append(r)

    for arm in ARMS:
        for lr in LRS:
            for seed in SEEDS:
                run(arm, lr, seed, STEPS)
    for lr in LRS:
        for seed in WIDE_SEEDS:
            run("mlp-wide", lr, seed, STEPS)
    best = {arm: best_lr(runs, arm) for arm in ARMS | CONTROLS}
    for seed in WIDE_SEEDS:
        run("mlp-wide", best["mlp-wide"], seed, LONG_FACTOR * STEPS)
    blind = query_blind_accuracy(make_data(TEST, seed=99_999)[0])
    RESULTS.mkdir(exist_ok=True)
    config = dict(keys=KEYS, values=VALUES, pairs=PAIRS, dim=DIM, train=TRAIN, test=TEST, batch=BATCH,
                  steps=STEPS, lrs=LRS, seeds=SEEDS, params=params, best_lr=best,
                  wide_hidden=WIDE_HIDDEN, wide_seeds=WIDE_SEEDS, long_steps=LONG_FACTOR * STEPS,
                  query_blind=blind, torch=torch.__version__, threads=1)
    (RESULTS / "ch8_retrieval.json").write_text(json.dumps(dict(config=config, runs=runs), indent=1))
    lines = [f"# Key-value retrieval: attention vs MLP ({PAIRS} pairs, chance {1 / VALUES:.4f})", "",
             f"{STEPS} AdamW + OneCycleLR steps, batch {BATCH}, {TRAIN} training examples, "
             f"{TEST} test examples, seeds {list(SEEDS)}, 1 thread, torch {torch.__version__}.", "",
             f"Best rate: highest mean, ties to the larger rate. Query-blind baseline (most frequent "
             f"value, query ignored): {blind:.3f}.", "",
             "| arm | params | steps | lr | seeds | mean test accuracy | min | max |",
             "|---|---|---|---|---|---|---|---|"]
    for arm, lr, steps in sorted({(r["arm"], r["lr"], r["steps"]) for r in runs},
                                 key=lambda t: (list(ARMS | CONTROLS).index(t[0]), t[2], t[1])):
        accs = [r["accuracy"] for r in runs if (r["arm"], r["lr"], r["steps"]) == (arm, lr, steps)]
        mark = " (best)" if lr == best[arm] and steps == STEPS else ""
        lines.append(f"| {arm} | {params[arm]:,} | {steps} | {lr:g}{mark} | {len(accs)} | {statistics.mean(accs):.3f} | "
                     f"{min(accs):.3f} | {max(accs):.3f} |")
    (RESULTS / "ch8_retrieval.md").write_text("\n".join(lines) + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for arm, marker, color in zip(ARMS | CONTROLS, "os^", ("C0", "C1", "C2")):
        for lr in LRS:
            accs = [r["accuracy"] for r in runs if r["arm"] == arm and r["lr"] == lr and r["steps"] == STEPS]
            ax.scatter([lr] * len(accs), accs, marker=marker, alpha=0.6, color=color,
                       label=f"{arm} ({params[arm]:,} params)" if lr == LRS[0] else None)
    long = [r for r in runs if r["steps"] != STEPS]
    ax.scatter([r["lr"] for r in long], [r["accuracy"] for r in long], marker="v", color="C3", alpha=0.6,
               label=f"mlp-wide, {LONG_FACTOR * STEPS} steps")
    ax.axhline(blind, ls="--", color="C1", lw=1, label="query-blind baseline")
    ax.axhline(1 / VALUES, ls=":", color="gray", label="chance")
    ax.set(xscale="log", xlabel="peak learning rate", ylabel="test accuracy",
           title="key-value retrieval, one dot per run (seeds: see the table)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "ch8_retrieval.png", dpi=120)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
