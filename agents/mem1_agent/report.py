"""Reports of an evaluation: a Markdown table, a JSON file and a plot of context tokens per turn."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import fmean

from mem1_agent.eval import Cell, EvalConfig
from mem1_agent.metrics import Summary

COLUMNS = (
    ("env", "{s.env_id}"),
    ("context", "{s.context_strategy}"),
    ("n", "{s.n}"),
    ("EM (sum)", "{s.em_text}"),
    ("F1 (sum)", "{s.f1_text}"),
    ("evidence", "{s.evidence_text}"),
    ("peak tokens", "{s.peak_tokens:.0f}"),
    ("peak w/o prompt", "{s.peak_tokens_no_prompt:.0f}"),
    ("dependency", "{s.dependency:.3g}"),
    ("s / traj", "{s.wall_seconds:.2f}"),
    ("valid actions", "{s.valid_action_rate:.1%}"),
    ("turns", "{s.turns:.1f}"),
)
# What MEM1's released eval script computes from the same records (mem1_eval.py, docs/metrics.md),
# shown when some row has them; the peak says how many trajectories its filter kept.
PAPER_COLUMNS = (
    ("paper EM", lambda s: _number(s.paper_em_sum, ".3f")),
    ("paper F1", lambda s: _number(s.paper_f1_sum, ".3f")),
    ("paper peak (kept)", lambda s: f"{_number(s.paper_peak_tokens, '.0f')} ({s.paper_peak_kept}/{s.n})"),
    ("paper dependency", lambda s: _number(s.paper_dependency, ".3g")),
)


def summaries_of(cells: Sequence[Cell]) -> list[Summary]:
    return [cell.summary() for cell in cells if cell.trajectories]


def _number(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


# EM and F1 have their columns; other score keys of an env's protocol (WebShop: reward, success) get one each.
_QA_SCORES = ("em", "f1")


def score_columns(summaries: Sequence[Summary]) -> tuple[tuple[str, Callable[[Summary], str]], ...]:
    """A column per protocol score key beyond EM/F1 that some row reports (none for QA-only tables)."""
    keys = dict.fromkeys(key for s in summaries for key in s.scores if key not in _QA_SCORES)
    return tuple((key, lambda s, key=key: _number(s.scores.get(key), ".3f")) for key in keys)


def markdown_table(summaries: Sequence[Summary]) -> str:
    paper = PAPER_COLUMNS if any(s.paper_em_sum is not None for s in summaries) else ()
    extra = score_columns(summaries) + paper
    names = [name for name, _ in COLUMNS] + [name for name, _ in extra]
    header = "| " + " | ".join(names) + " |"
    rule = "|" + "|".join("---" for _ in names) + "|"
    rows = ["| " + " | ".join([fmt.format(s=s) for _, fmt in COLUMNS] + [cell(s) for _, cell in extra]) + " |"
            for s in summaries]
    return "\n".join([header, rule, *rows])


def mean_context_per_turn(cell: Cell) -> list[float]:
    """Mean context tokens at turn t over the trajectories that reached turn t."""
    curves = [m.context_tokens for m in cell.metrics()]
    longest = max((len(c) for c in curves), default=0)
    return [fmean(c[t] for c in curves if len(c) > t) for t in range(longest)]


def write_reports(cells: Sequence[Cell], config: EvalConfig, policy_name: str, tokenizer: str) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``context_tokens.png`` into ``config.out``."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    summaries = summaries_of(cells)
    table = markdown_table(summaries)
    payload = {
        "policy": policy_name,
        "tokenizer": tokenizer,
        "split": config.split,
        "seed": config.seed,
        "episodes": config.episodes,
        "max_new_tokens": config.max_new_tokens,
        "results": [s.to_dict() for s in summaries],
        "context_tokens_per_turn": {f"{c.env_id}|{c.context}": mean_context_per_turn(c) for c in cells if c.trajectories},
        "records": {f"{c.env_id}|{c.context}": str(c.path) for c in cells},
    }
    paths = {"json": out / "report.json", "markdown": out / "report.md", "plot": out / "context_tokens.png"}
    paths["json"].write_text(json.dumps(payload, indent=2), encoding="utf-8")
    paths["markdown"].write_text(
        f"# MEM1 evaluation\n\nPolicy `{policy_name}`; tokens counted with {tokenizer}; split `{config.split}`, "
        f"seed {config.seed}, {config.episodes} tasks per row. Peak tokens and dependency include the task "
        "prompt unless stated (metrics.py documents the definitions). Columns named paper are what MEM1's "
        "released eval script computes from the same records, tokens counted with the same tokenizer "
        "(docs/metrics.md lists how they differ).\n\n"
        f"{table}\n\n![context tokens per turn]({paths['plot'].name})\n",
        encoding="utf-8",
    )
    plot_context_tokens(cells, paths["plot"], title=f"{policy_name} ({tokenizer})")
    return paths


def plot_context_tokens(cells: Sequence[Cell], path: Path, title: str) -> None:
    """One panel per env: mean context tokens at each turn, one line per context strategy."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers
    import matplotlib.pyplot as plt

    env_ids = list(dict.fromkeys(c.env_id for c in cells if c.trajectories))
    cols = min(3, max(1, len(env_ids)))
    rows = math.ceil(len(env_ids) / cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.4 * rows), squeeze=False)
    for ax, env_id in zip(axes.flat, env_ids):
        for cell in (c for c in cells if c.env_id == env_id and c.trajectories):
            curve = mean_context_per_turn(cell)
            ax.plot(range(1, len(curve) + 1), curve, marker=".", label=cell.context)
        ax.set_title(env_id, fontsize=10)
        ax.set_xlabel("turn")
        ax.set_ylabel("context tokens (mean)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(env_ids):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

