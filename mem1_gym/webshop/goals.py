"""Goals: the instruction, the target product's attributes and options, and the price cap.

Sources (reference/webshop.md §3): the generated default (``goals.jsonl`` written by
:mod:`~mem1_gym.webshop.generate`), WebShop's human instructions (``items_human_ins.json``, the
paper's) and its synthetic option-combination goals (from ``items_ins_v2*.json``). Human and
synthetic goals are shuffled with seed 233 and split as the original's baselines: test = goals
0–499, validation = 500–1499, train = the rest. The price cap, drawn unseeded in the original, is
drawn here from ``random.Random(seed)`` in goal order, so the same files give the same goals.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mem1_gym.webshop.catalog import Catalog, Product
from mem1_gym.webshop.jsonstream import iter_json_object

SPLITS = ("train", "validation", "test")
SPLIT_SHUFFLE_SEED = 233  # the original shuffles its goals with random.seed(233) before slicing
TEST_SIZE, VALIDATION_SIZE = 500, 1000
NO_PRICE_CAP = 1_000_000.0
PRICE_STEPS = tuple(range(10, 1000, 10))  # the original's PRICE_RANGE: caps are multiples of $10


@dataclass(frozen=True)
class Goal:
    """One shopping task; also what :func:`~mem1_gym.webshop.reward.get_reward` reads."""

    asin: str
    instruction: str
    attributes: tuple[str, ...]
    options: tuple[tuple[str, str], ...]  # (group, value) to select; group "" for human goals' value lists
    price_upper: float
    query: str
    product_category: str
    name: str  # the target's title (the type reward compares titles' nouns)
    name_nouns: tuple[str, ...]
    category: str = ""
    weight: float = 1.0
    id: str = field(default="")

    @property
    def option_values(self) -> tuple[str, ...]:
        return tuple(value for _, value in self.options)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> Goal:
        return cls(
            **{
                **row,
                "attributes": tuple(row["attributes"]),
                "options": tuple((str(g), str(v)) for g, v in row["options"]),
                "name_nouns": tuple(row["name_nouns"]),
            }
        )


def price_cap(price: float, rng: random.Random) -> tuple[float, str]:
    """(cap, instruction suffix): two of the (up to) four multiples of $10 above ``price`` are drawn
    and the larger is the cap; with fewer than two there is no cap and no price clause."""
    steps = [p for p in PRICE_STEPS if p > price][:4]
    if len(steps) < 2:
        return NO_PRICE_CAP, ""
    cap = float(max(rng.sample(steps, 2)))
    return cap, f", and price lower than {cap:.2f} dollars"


def option_text(options: Sequence[tuple[str, str]]) -> str:
    """" with color: grey, and size: xl" (the synthetic goals' wording); "" without options."""
    return " with " + ", and ".join(f"{g}: {v}" for g, v in options) if options else ""


def make_goal(product: Product, instruction: str, attributes: Sequence[str], options: Sequence[tuple[str, str]],
              rng: random.Random, nouns: Sequence[str], **extra: Any) -> Goal:
    """A goal for ``product``: the instruction gets the price clause appended (trailing periods cut)."""
    cap, price_text = price_cap(product.price, rng)
    return Goal(
        asin=product.asin,
        instruction=instruction.strip().rstrip(".") + price_text,
        attributes=tuple(attributes),
        options=tuple(options),
        price_upper=cap,
        query=product.query,
        product_category=product.product_category,
        name=product.title,
        name_nouns=tuple(nouns),
        category=product.category,
        **extra,
    )


def _nouns(product: Product) -> tuple[str, ...]:
    from mem1_gym.webshop.reward import product_nouns

    return product_nouns(product)


def human_goals(catalog: Catalog, human_path: str | Path, seed: int = 0) -> list[Goal]:
    """Goals from ``items_human_ins.json`` ({asin: [{instruction, instruction_attributes,
    instruction_options}]}): records without attributes are skipped, as the original does."""
    rng, goals = random.Random(seed), []
    records = {asin: rows for asin, rows in iter_json_object(human_path) if asin in catalog}
    for product in catalog:
        for row in records.get(product.asin) or ():
            if not row.get("instruction_attributes"):
                continue
            options = [("", str(v)) for v in row.get("instruction_options") or ()]
            goals.append(make_goal(product, row["instruction"], row["instruction_attributes"], options, rng, _nouns(product)))
    return goals


def synthetic_goals(catalog: Catalog, attributes: Mapping[str, Any], seed: int = 0) -> list[Goal]:
    """One goal per option combination of every product with an ``items_ins_v2`` instruction, the
    instruction followed by " with name: value, and ..."; weights are inverse attribute frequency."""
    rng, goals = random.Random(seed), []
    for product in catalog:
        record = attributes.get(product.asin) or {}
        if not record.get("instruction"):
            continue
        groups = [[(name, value) for value in values] for name, values in product.options]
        for combo in itertools.product(*groups):
            text = record["instruction"].strip().rstrip(".") + option_text(combo)
            goals.append(make_goal(product, text, record.get("instruction_attributes") or (), combo, rng, _nouns(product)))
    return with_inverse_frequency_weights(goals)


def with_inverse_frequency_weights(goals: list[Goal]) -> list[Goal]:
    """Weight = mean over a goal's attributes of 1 / (goals having that attribute); 0 without any."""
    counts: dict[str, int] = {}
    for goal in goals:
        for attribute in goal.attributes:
            counts[attribute] = counts.get(attribute, 0) + 1
    out = []
    for goal in goals:
        weight = sum(1 / counts[a] for a in goal.attributes) / len(goal.attributes) if goal.attributes else 0.0
        out.append(Goal(**{**goal.__dict__, "weight": weight}))
    return out


def split_goals(goals: Iterable[Goal]) -> dict[str, tuple[Goal, ...]]:
    """Shuffle with seed 233 and slice: test 0–499, validation 500–1499, train the rest; ids are
    ``<split>-<index>``. A catalogue too small for that gives every split at least one goal."""
    goals = list(goals)
    if len(goals) < 3:
        raise ValueError(f"{len(goals)} goals cannot fill the train/validation/test splits; use more products")
    random.Random(SPLIT_SHUFFLE_SEED).shuffle(goals)
    n_test = min(TEST_SIZE, len(goals) // 3)
    n_val = min(VALIDATION_SIZE, len(goals) // 3)
    parts = {"test": goals[:n_test], "validation": goals[n_test : n_test + n_val], "train": goals[n_test + n_val :]}
    return {
        split: tuple(Goal(**{**g.__dict__, "id": f"{split}-{i}"}) for i, g in enumerate(parts[split])) for split in SPLITS
    }


def save_goals(goals: Iterable[Goal], path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(goal.to_json(), ensure_ascii=False) + "\n" for goal in goals)


def load_goals(path: str | Path) -> list[Goal]:
    """Goals written by :func:`save_goals` (one JSON object per line)."""
    with open(path, encoding="utf-8") as f:
        return [Goal.from_json(json.loads(line)) for line in f if line.strip()]


def goals_by_split(goals: Iterable[Goal], path: str | Path) -> dict[str, tuple[Goal, ...]]:
    """Goals of :func:`split_goals` grouped again by their ``<split>-<index>`` ids; ``path`` (where they
    were read) is named when a split has none, instead of a "high <= 0" at the first reset."""
    goals = list(goals)
    by_split = {split: tuple(g for g in goals if g.id.startswith(split + "-")) for split in SPLITS}
    empty = [split for split, group in by_split.items() if not group]
    if empty:
        raise ValueError(
            f"{path} has no {' or '.join(empty)} goals ({len(goals)} in all): the file is cut short or was not "
            f"written by split_goals; delete {Path(path).parent} if it is a generated shop (it is regenerated), "
            f"else rewrite the file"
        )
    return by_split
