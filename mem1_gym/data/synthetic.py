"""The embedded default data of the QA envs: a seeded, invented encyclopedia and questions over it.

The world has countries, cities, rivers, mountains, universities, people, companies and works
(films, novels, operas), linked by relations (born in, studied at, mentor, spouse, founded by,
headquartered in, directed by, first ascent...). About half of the people, companies, works and
cities get a *near-namesake* with similar fields ("Aldric Venn" and "Aldric Vennor", both
shipbuilders from Tarsen), so that a search has to be precise. Names are built from syllables:
no pretraining model has seen these facts (DESIGN.md §6).

Files, in the formats real data uses, so the envs read both through one code path:

* ``corpus.jsonl``: Search-R1 corpus rows ``{"id": "0", "contents": "\\"Title\\"\\ntext"}``, 2–3
  passages of 60–120 words per article.
* ``train.jsonl`` / ``validation.jsonl`` / ``test.jsonl``: FlashRAG rows with our metadata
  (``kind`` single/bridge/comparison, ``gold_doc_ids``, ``hops`` with keyword queries). BM25
  (bm25s, English stopwords) ranks a hop's gold passage in the top 3 for 99.98% of the hop
  queries of the default world (tests/data/test_synthetic.py checks >= 90%).
* ``world.json``: the config, the generator version and the counts.
* ``manifest.json``: each file's size and hash, written last by :func:`ensure_world`
  (:mod:`mem1_gym.data.manifest`); a world that does not match it is regenerated with a warning.

Splits are disjoint by entity: a question's split is that of the entities it names (a person and
their companies and works share a split; see mem1_gym.data.synthetic_entities), so no question id,
question text or named entity is shared between splits.

Size: ``WorldConfig(n_passages=100_000)`` for benchmarks (any size up to 5M). Measured on 2 CPU
cores, the first ``ensure_world`` takes about 1 s for the default 20,000 passages (17 MB on disk)
and 5–6 s for 100,000 (82 MB); later calls check the files against the manifest (~12 ms for the
default world, once per process).

>>> world = generate_world(WorldConfig(n_passages=600))
>>> len(world.corpus) >= 600 and sorted(world.questions) == ["test", "train", "validation"]
True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from mem1_gym.data import synthetic_questions as sq
from mem1_gym.data.cache import cache_dir
from mem1_gym.data.formats import write_qa_jsonl
from mem1_gym.data.manifest import ensure_built
from mem1_gym.data.synthetic_entities import SPLITS, Entities, Entity
from mem1_gym.data.synthetic_graph import build_entities
from mem1_gym.data.synthetic_text import iter_passages, title_line
from mem1_gym.data.tasks import QAItem

# Bump whenever the generator's output changes for an unchanged config: it is part of the cache key.
WORLD_VERSION = 1
WORLD_INFO = "world.json"
CORPUS = "corpus.jsonl"


@dataclass(frozen=True)
class WorldConfig:
    """Size and shape of a synthetic world; the same config always gives byte-identical files."""

    seed: int = 0
    """Seed of every random choice (entities, text, questions)."""
    n_passages: int = 20_000
    """Minimum number of passages; the world may hold a few more (whole articles only)."""
    questions_per_entity: int = 2
    """Questions asked about each entity (fewer when an entity has fewer distinct facts)."""
    kind_weights: tuple[float, float, float] = (0.4, 0.4, 0.2)
    """Relative frequency of single-hop, bridge and comparison questions."""
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    """Share of entities (hence of questions) in train, validation and test."""
    distractor_rate: float = 0.5
    """Probability that a person, company, work or city gets a near-namesake."""

    def __post_init__(self) -> None:
        if not 500 <= self.n_passages <= 5_000_000:
            raise ValueError(
                f"WorldConfig.n_passages must be in [500, 5_000_000], got {self.n_passages}; below 500 some "
                f"splits get no questions, above 5M pass your own corpus with corpus_path= instead"
            )
        if self.questions_per_entity < 1:
            raise ValueError(f"WorldConfig.questions_per_entity must be >= 1, got {self.questions_per_entity}")
        if len(self.kind_weights) != 3 or min(self.kind_weights) < 0 or sum(self.kind_weights) <= 0:
            raise ValueError(
                f"WorldConfig.kind_weights must be 3 non-negative weights (single, bridge, comparison) with a "
                f"positive sum, got {self.kind_weights}"
            )
        if len(self.split_fractions) != 3 or min(self.split_fractions) <= 0:
            raise ValueError(
                f"WorldConfig.split_fractions must be 3 positive shares (train, validation, test), got "
                f"{self.split_fractions}; every split needs questions"
            )
        if not 0.0 <= self.distractor_rate <= 1.0:
            raise ValueError(f"WorldConfig.distractor_rate must be in [0, 1], got {self.distractor_rate}")

    def key(self) -> str:
        """A short hash of the config and the generator version (the cache directory name)."""
        payload = json.dumps({"version": WORLD_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return f"world-v{WORLD_VERSION}-{hashlib.sha256(payload.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class World:
    """A generated world in memory."""

    config: WorldConfig
    corpus: list[tuple[str, str]]  # (id, contents) in corpus order
    questions: dict[str, list[QAItem]]  # split -> questions


@dataclass(frozen=True)
class WorldFiles:
    """Where a world's files are."""

    root: Path
    corpus_path: Path
    qa_paths: dict[str, Path]  # split -> FlashRAG jsonl


def generate_world(config: WorldConfig = WorldConfig()) -> World:
    """Entities, passages and questions. Independent random streams per stage, so a change in the
    text templates does not reshuffle the entity graph."""
    entities = build_entities(
        random.Random(f"{config.seed}-entities"), config.n_passages, config.split_fractions, config.distractor_rate
    )
    corpus = []
    for entity, section, text in iter_passages(entities, random.Random(f"{config.seed}-text")):
        doc_id = str(len(corpus))
        entity.docs[section] = doc_id
        corpus.append((doc_id, f"{title_line(entity)}\n{text}"))
    questions = _questions(entities, random.Random(f"{config.seed}-questions"), config)
    return World(config, corpus, questions)


def _questions(world: Entities, rng: random.Random, config: WorldConfig) -> dict[str, list[QAItem]]:
    """``questions_per_entity`` questions about every entity, each in the entity's split."""
    partners = _comparison_partners(world)
    namesake = {a.key: b for a, b in world.namesakes} | {b.key: a for a, b in world.namesakes}
    seen: set[str] = set()
    out: dict[str, list[QAItem]] = {split: [] for split in SPLITS}
    for subject in world.all():
        by_kind = {"single": sq.single(subject, rng), "bridge": sq.bridge(subject, rng), "comparison": []}
        group = partners.get(_group(subject), [])
        if len(group) > 1:
            other = namesake.get(subject.key)
            if other is None or other.split != subject.split or rng.random() < 0.5:
                other = rng.choice(group)
            if other is not subject:
                by_kind["comparison"] = sq.comparison(subject, other, rng)
        for draft in _pick(rng, by_kind, config.kind_weights, config.questions_per_entity, seen):
            items = out[subject.split]
            items.append(sq.to_item(draft, f"synthetic-{subject.split}-{len(items)}"))
    return out


def _group(entity: Entity) -> tuple:
    return entity.split, type(entity), getattr(entity, "kind", None)


def _comparison_partners(world: Entities) -> dict[tuple, list[Entity]]:
    groups: dict[tuple, list[Entity]] = {}
    for entity in world.all():
        groups.setdefault(_group(entity), []).append(entity)
    return groups


def _pick(rng: random.Random, by_kind: dict[str, list[sq.Draft]], weights, n: int, seen: set[str]) -> list[sq.Draft]:
    """Up to ``n`` drafts, kinds drawn by ``weights``; a kind with nothing left falls back to the others.

    Drafts are checked lazily, in random order, because ``gives_away`` normalises text and most
    drafts are never asked (it dominated generation time when applied to all of them).
    """
    chosen = []
    for _ in range(n):
        kind = rng.choices(sq.KINDS, weights=weights)[0]
        for k in [kind] + [k for k in sq.KINDS if k != kind]:
            candidates = rng.sample(by_kind[k], len(by_kind[k]))
            draft = next((d for d in candidates if d.question not in seen and not sq.gives_away(d)), None)
            if draft is not None:
                seen.add(draft.question)
                chosen.append(draft)
                break
    return chosen


def write_world(config: WorldConfig, root: str | Path) -> WorldFiles:
    """Generate a world and write its files into ``root`` (created if needed; not atomic: see ensure_world)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    world = generate_world(config)
    with open(root / CORPUS, "w", encoding="utf-8", newline="\n") as f:
        for doc_id, contents in world.corpus:
            f.write(json.dumps({"id": doc_id, "contents": contents}, ensure_ascii=False) + "\n")
    for split in SPLITS:
        write_qa_jsonl(world.questions[split], root / f"{split}.jsonl")
    info = {
        "version": WORLD_VERSION,
        "config": dataclasses.asdict(config),
        "n_passages": len(world.corpus),
        "n_questions": {split: len(world.questions[split]) for split in SPLITS},
    }
    (root / WORLD_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return world_files(root)


def world_files(root: str | Path) -> WorldFiles:
    root = Path(root)
    return WorldFiles(root, root / CORPUS, {split: root / f"{split}.jsonl" for split in SPLITS})


def ensure_world(config: WorldConfig = WorldConfig(), root: str | Path | None = None) -> WorldFiles:
    """The files of ``config``'s world under ``root`` (default: ``cache_dir()``), generated on first use.

    The files are checked against the world's manifest on every call (a stat only, after the first
    check of a process); a damaged world, or one an older mem1-gym wrote without a manifest, is
    regenerated with a warning (generation is deterministic: same config, same bytes). Safe under
    concurrency: one caller builds into a temporary directory and renames it into place under a
    lock, the others wait and use its copy.
    """
    base = Path(root) if root is not None else cache_dir()
    return world_files(ensure_built(base / config.key(), lambda tmp: write_world(config, tmp), "synthetic world"))
