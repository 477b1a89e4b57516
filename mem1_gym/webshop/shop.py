"""The shop model: catalogue + goals + search, loaded once per configuration and shared in a process.

``ShopConfig()`` is the embedded default (the generated 1,000-product shop); pointing
``products_path`` (and ``attributes_path``, ``human_goals_path``) at WebShop's files loads those
through the same code. Every env and the web server of a process share one :class:`Shop` per
configuration: the catalogue and index are read-only, sessions live in :mod:`~mem1_gym.webshop.site`.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

from mem1_gym.data.cache import cache_dir
from mem1_gym.webshop.catalog import Catalog, load_attributes, load_catalog
from mem1_gym.webshop.goals import (
    SPLITS,
    Goal,
    goals_by_split,
    human_goals,
    load_goals,
    split_goals,
    synthetic_goals,
)
from mem1_gym.webshop.search import ProductSearch

GOAL_SOURCES = ("auto", "generated", "human", "synthetic")
SEARCH_BACKENDS = ("bm25s", "pyserini")


@dataclass(frozen=True)
class ShopConfig:
    """Where the products and goals come from and how they are searched."""

    products_path: str | None = None
    """WebShop ``items_shuffle*.json`` (streamed); None -> the generated catalogue."""
    attributes_path: str | None = None
    """WebShop ``items_ins_v2*.json`` (product attributes, synthetic instructions)."""
    human_goals_path: str | None = None
    """WebShop ``items_human_ins.json`` (the paper's 12,087 human instructions)."""
    goal_source: str = "auto"
    """"generated", "human", "synthetic" or "auto" (generated without products_path, else human when
    human_goals_path is given, else synthetic)."""
    product_limit: int | None = None
    """Keep the first N products of products_path (the original's num_products); None keeps all."""
    n_products: int = 1000
    """Size of the generated catalogue."""
    seed: int = 0
    """Seed of the generated shop, of ranged-price draws and of price caps."""
    search_backend: str = "bm25s"
    """"bm25s" (in process, default) or "pyserini" (Lucene, as the original; needs mem1-gym[pyserini])."""
    index_dir: str | None = None
    """Where the search index lives or is built; None -> a cache directory keyed by the corpus."""
    show_attributes: bool = False
    """Show the "Attributes" button and sub-page on item pages (the original's --attrs; off for agents
    because it lists the hidden attributes the reward checks)."""

    def __post_init__(self) -> None:
        if self.goal_source not in GOAL_SOURCES:
            raise ValueError(f"goal_source must be one of {GOAL_SOURCES}, got {self.goal_source!r}")
        if self.search_backend not in SEARCH_BACKENDS:
            raise ValueError(f"search_backend must be one of {SEARCH_BACKENDS}, got {self.search_backend!r}")
        if self.products_path is None and self.goal_source in ("human", "synthetic"):
            raise ValueError(f"goal_source={self.goal_source!r} needs products_path= WebShop's items_shuffle*.json")
        if self.goal_source == "human" and self.human_goals_path is None:
            raise ValueError("goal_source='human' needs human_goals_path= WebShop's items_human_ins.json")
        if self.goal_source == "generated" and self.products_path is not None:
            raise ValueError("goal_source='generated' uses the generated catalogue; drop products_path or pick 'human'/'synthetic'")
        if self.product_limit is not None and self.product_limit < 1:
            raise ValueError(f"product_limit must be >= 1 or None, got {self.product_limit}")
        for name in ("products_path", "attributes_path", "human_goals_path"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"{name}={path} does not exist; download WebShop's data (setup.sh) or drop it")

    @property
    def resolved_goal_source(self) -> str:
        if self.goal_source != "auto":
            return self.goal_source
        if self.products_path is None:
            return "generated"
        return "human" if self.human_goals_path else "synthetic"


class Shop:
    """Catalogue, goals per split and product search of one :class:`ShopConfig`."""

    def __init__(self, config: ShopConfig = ShopConfig()):
        self.config = config
        self.catalog, self.goals, corpus_path = _load(config)
        self.search = ProductSearch(self.catalog, corpus_path, config.search_backend, config.index_dir)

    def goal(self, split: str, index: int) -> Goal:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self.goals[split][index]

    def close(self) -> None:
        self.search.close()


def _load(config: ShopConfig) -> tuple[Catalog, dict[str, tuple[Goal, ...]], Path]:
    source = config.resolved_goal_source
    if source == "generated":
        from mem1_gym.webshop.generate import (
            ATTRIBUTES_FILE,
            GOALS_FILE,
            PRODUCTS_FILE,
            SEARCH_CORPUS_FILE,
            GeneratorConfig,
            ensure_generated,
        )

        directory = ensure_generated(GeneratorConfig(n_products=config.n_products, seed=config.seed))
        attributes = load_attributes(directory / ATTRIBUTES_FILE)
        catalog = load_catalog(directory / PRODUCTS_FILE, attributes, price_seed=config.seed)
        by_split = goals_by_split(load_goals(directory / GOALS_FILE), directory / GOALS_FILE)
        return catalog, by_split, directory / SEARCH_CORPUS_FILE
    attributes = load_attributes(config.attributes_path)
    catalog = load_catalog(config.products_path, attributes, limit=config.product_limit, price_seed=config.seed)
    if source == "human":
        goals = human_goals(catalog, config.human_goals_path, seed=config.seed)
    else:
        goals = synthetic_goals(catalog, attributes, seed=config.seed)
    if not goals:
        raise ValueError(
            f"no goals could be built from {config.products_path} with goal_source={source!r}: the "
            f"{'human instructions' if source == 'human' else 'items_ins_v2 instructions'} name none of its products"
        )
    path = Path(config.products_path).resolve()
    key = hashlib.sha1(f"{path}|{path.stat().st_size}|{path.stat().st_mtime_ns}|{config.product_limit}".encode()).hexdigest()[:12]
    return catalog, split_goals(goals), cache_dir() / "webshop" / f"corpus-{path.stem}-{key}.jsonl"


_SHOPS: dict[ShopConfig, Shop] = {}
_SHOPS_LOCK = threading.Lock()


def get_shop(config: ShopConfig = ShopConfig()) -> Shop:
    """The process-wide :class:`Shop` of ``config`` (loaded on first use)."""
    with _SHOPS_LOCK:
        if config not in _SHOPS:
            _SHOPS[config] = Shop(config)
        return _SHOPS[config]
