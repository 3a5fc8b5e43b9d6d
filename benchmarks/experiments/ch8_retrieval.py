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
``SEEDS`` seeds; each arm's best rate is the one with the highest mean test accuracy.

    OMP_NUM_THREADS=1 python benchmarks/experiments/ch8_retrieval.py   # about 3 minutes

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
    model = ARMS[arm]()
    loader = DataLoader(train_set, batch_size=BATCH, shuffle=True, generator=generator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    start = time.perf_counter()
    nets.fit(model, loader, epochs=-(-steps // len(loader)), max_steps=steps, optimizer=optimizer,
             scheduler=schedule, device=torch.device("cpu"), quiet=True)
    seconds = time.perf_counter() - start
    return model, nets.evaluate(model, test_loader)["metric"], seconds


def best_lr(runs, arm: str) -> float:
    means = {lr: statistics.mean(r["accuracy"] for r in runs if r["arm"] == arm and r["lr"] == lr)
             for lr in LRS}
    return max(means, key=means.get)


def main() -> None:
    torch.set_num_threads(1)
    params = {arm: nets.count_params(build()) for arm, build in ARMS.items()}
    assert params["mlp"] >= params["attention"], params
    runs = []
    for arm in ARMS:
        for lr in LRS:
            for seed in SEEDS:
                _, acc, seconds = train(arm, lr, seed)
                runs.append(dict(arm=arm, lr=lr, seed=seed, accuracy=acc, seconds=round(seconds, 2)))
                print(f"{arm:9s} lr={lr:g} seed={seed} accuracy={acc:.3f} ({seconds:.1f} s)", flush=True)
    RESULTS.mkdir(exist_ok=True)
    best = {arm: best_lr(runs, arm) for arm in ARMS}
    config = dict(keys=KEYS, values=VALUES, pairs=PAIRS, dim=DIM, train=TRAIN, test=TEST, batch=BATCH,
                  steps=STEPS, lrs=LRS, seeds=SEEDS, params=params, best_lr=best,
                  torch=torch.__version__, threads=1)
    (RESULTS / "ch8_retrieval.json").write_text(json.dumps(dict(config=config, runs=runs), indent=1))
    lines = [f"# Key-value retrieval: attention vs MLP ({PAIRS} pairs, chance {1 / VALUES:.4f})", "",
             f"{STEPS} AdamW + OneCycleLR steps, batch {BATCH}, {TRAIN} training examples, "
             f"{TEST} test examples, seeds {list(SEEDS)}, 1 thread, torch {torch.__version__}.", "",
             "| arm | params | lr | mean test accuracy | min | max |", "|---|---|---|---|---|---|"]
    for arm in ARMS:
        for lr in LRS:
            accs = [r["accuracy"] for r in runs if r["arm"] == arm and r["lr"] == lr]
            mark = " (best)" if lr == best[arm] else ""
            lines.append(f"| {arm} | {params[arm]:,} | {lr:g}{mark} | {statistics.mean(accs):.3f} | "
                         f"{min(accs):.3f} | {max(accs):.3f} |")
    (RESULTS / "ch8_retrieval.md").write_text("\n".join(lines) + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for arm, marker in zip(ARMS, "os"):
        for lr in LRS:
            accs = [r["accuracy"] for r in runs if r["arm"] == arm and r["lr"] == lr]
            ax.scatter([lr] * len(accs), accs, marker=marker, alpha=0.6, color="C0" if arm == "attention" else "C1",
                       label=f"{arm} ({params[arm]:,} params)" if lr == LRS[0] else None)
    ax.axhline(1 / VALUES, ls=":", color="gray", label="chance")
    ax.set(xscale="log", xlabel="peak learning rate", ylabel="test accuracy",
           title=f"key-value retrieval, {len(SEEDS)} seeds per point")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "ch8_retrieval.png", dpi=120)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
