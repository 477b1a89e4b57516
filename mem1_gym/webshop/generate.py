"""The embedded default shop: a seeded catalogue and goals, written in WebShop's own file formats.

``ensure_generated(GeneratorConfig())`` writes, once per configuration, into ``cache_dir()/webshop``:

* ``items_shuffle.json``: a JSON array of raw product records in the original's schema (plus two
  keys the original lacks: ``title_nouns`` for the type reward and ``reviews``);
* ``items_ins_v2.json``: {asin: {attributes, instruction, instruction_attributes}};
* ``goals.jsonl``: the goals (instruction, attributes, options, frozen price cap), already split;
* ``search_corpus.jsonl``: the products' indexed text (:func:`~mem1_gym.webshop.search.write_corpus`);
* ``manifest.json``: each file's size and hash (:mod:`mem1_gym.data.manifest`), written last; a shop
  that does not match it is regenerated with a warning (issue 21: a goals file cut short gave other
  goals for the same seed, or none for a split).

The env then loads these through the same code as the original files. 1,000 products and ~6,500
goals take about a second to generate.
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass
from pathlib import Path

from mem1_gym.data.cache import cache_dir
from mem1_gym.data.manifest import ensure_built
from mem1_gym.webshop import vocab
from mem1_gym.webshop.catalog import load_catalog
from mem1_gym.webshop.goals import make_goal, option_text, save_goals, split_goals
from mem1_gym.webshop.reward import approximate_title_nouns
from mem1_gym.webshop.search import write_corpus
from mem1_gym.webshop.vocab import ProductType

FORMAT_VERSION = 2  # part of the cache path: bump it whenever vocab.py or the generation changes
PRODUCTS_FILE, ATTRIBUTES_FILE, GOALS_FILE = "items_shuffle.json", "items_ins_v2.json", "goals.jsonl"
SEARCH_CORPUS_FILE = "search_corpus.jsonl"
_ASIN_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_TEMPLATES = (
    "i am looking for {a}{attrs} {head}{aud}",
    "i need {a}{head}{aud} that is {attrs}",
    "find me {a}{attrs} {head}{aud}",
    "i want to buy {a}{head}{aud}, and it should be {attrs}",
    "i'm looking for {a}{desc} {head}{aud} that is {attrs}",
)


@dataclass(frozen=True)
class GeneratorConfig:
    """Size and seed of the generated shop."""

    n_products: int = 1000
    """Products, spread evenly over the 5 categories' 30 product types (>= 30)."""
    goals_per_product: int = 12
    """Most goals (option combinations) drawn per product."""
    seed: int = 0
    """Seed of every draw: names, attributes, options, prices, goals, price caps."""

    def __post_init__(self) -> None:
        n_types = sum(len(types) for types in vocab.CATEGORIES.values())
        if self.n_products < n_types:
            raise ValueError(f"n_products must be >= {n_types} (one per product type), got {self.n_products}")
        if self.goals_per_product < 1:
            raise ValueError(f"goals_per_product must be >= 1, got {self.goals_per_product}")

    @property
    def directory(self) -> Path:
        return cache_dir() / "webshop" / f"generated-v{FORMAT_VERSION}-n{self.n_products}-g{self.goals_per_product}-s{self.seed}"


def _asin(rng: random.Random, taken: set[str]) -> str:
    while True:
        asin = "B0" + "".join(rng.choice(_ASIN_CHARS) for _ in range(8))
        if asin not in taken:
            taken.add(asin)
            return asin


def _title(rng: random.Random, brand: str, ptype: ProductType, attributes: list[str], taken: set[str]) -> tuple[str, list[str], str, str]:
    """(title, its nouns, head, audience); titles are unique so that every product is findable."""
    for attempt in range(50):
        head, audience = rng.choice(ptype.heads), rng.choice(ptype.audiences)
        descriptor = rng.choice(ptype.descriptors)
        model = f" {rng.randint(100, 999)}" if attempt > 10 else ""
        words = f"{brand}{model} {descriptor.title()} {head.title()}" + (f" for {audience.title()}" if audience else "")
        title = f"{words}, {', '.join(a.title() for a in attributes[:2])}"
        if title not in taken:
            taken.add(title)
            # spaCy's nouns as the reward approximates them (a brand/head/audience list disagreed
            # with spaCy's r_type on 11.6 % of same-type purchases; this one on 0.09 %).
            return title, list(approximate_title_nouns(title)), head, audience
    raise RuntimeError("could not draw a unique title; lower n_products or add words to vocab.py")


def _raw_product(rng: random.Random, category: str, ptype: ProductType, asins: set[str], titles: set[str]) -> dict:
    brand = rng.choice(vocab.BRANDS)
    attributes = rng.sample(ptype.attributes, k=rng.randint(2, min(4, len(ptype.attributes))))
    title, nouns, head, audience = _title(rng, brand, ptype, attributes, titles)
    options = {}
    for name, values in ptype.options:
        picked = rng.sample(values, k=rng.randint(2, min(5, len(values))))
        options[name] = [{"value": v, "image": None} for v in sorted(picked, key=values.index)]
    low, high = ptype.price
    price = int(rng.uniform(low, high)) + 0.99
    pricing = f"${price:.2f}" if rng.random() > 0.15 else f"${price:.2f} - ${price * rng.uniform(1.2, 1.6):.2f}"
    use = rng.choice(ptype.uses)
    verb = "are" if head.endswith("s") else "is"
    description = (
        f"The {brand} {head} {verb} {rng.choice(ptype.descriptors)} and made for {use}. "
        f"{'They are' if verb == 'are' else 'It is'} {', '.join(attributes)}, so {'they fit' if verb == 'are' else 'it fits'} {'all ' + audience if audience else 'everyone'} who wants "
        f"a reliable {head}. Backed by {brand}'s 30-day satisfaction guarantee."
    )
    bullets = [f"{a.upper()}: {brand} {head} designed to be {a}." for a in attributes]
    bullets.append(f"GREAT FOR {use.upper()}: {rng.choice(ptype.descriptors)} design you will enjoy every day.")
    reviews = [
        {"rating": rng.randint(3, 5), "title": rng.choice(vocab.REVIEW_OPENERS), "body": rng.choice(vocab.REVIEW_BODIES)}
        for _ in range(rng.randint(0, 3))
    ]
    return {
        "asin": _asin(rng, asins), "name": title, "full_description": description, "small_description": bullets,
        "pricing": pricing, "images": [], "customization_options": options, "category": category,
        "query": ptype.query, "product_category": ptype.breadcrumb, "title_nouns": nouns, "reviews": reviews,
        "_head": head, "_audience": audience, "_attributes": attributes,
    }


def _instruction(rng: random.Random, raw: dict, ptype: ProductType) -> tuple[str, list[str]]:
    """A goal instruction mentioning 1-3 of the product's attributes, and those attributes."""
    wanted = rng.sample(raw["_attributes"], k=rng.randint(1, min(3, len(raw["_attributes"]))))
    attrs = wanted[0] if len(wanted) == 1 else ", ".join(wanted[:-1]) + " and " + wanted[-1]
    head = raw["_head"]
    article = "" if head.endswith("s") else ("an " if head[0] in "aeiou" else "a ")
    text = rng.choice(_TEMPLATES).format(
        a=article, attrs=attrs, head=head, aud=f" for {raw['_audience']}" if raw["_audience"] else "",
        desc=rng.choice(ptype.descriptors),
    )
    return text, wanted


def generate(config: GeneratorConfig, out_dir: Path) -> None:
    """Write the files of the generated shop into ``out_dir`` (all but the manifest)."""
    rng = random.Random(config.seed)
    types = [(category, ptype) for category, ptypes in vocab.CATEGORIES.items() for ptype in ptypes]
    by_query = {ptype.query: ptype for _, ptype in types}
    asins: set[str] = set()
    titles: set[str] = set()
    raws = [_raw_product(rng, *types[i % len(types)], asins, titles) for i in range(config.n_products)]
    rng.shuffle(raws)  # the original's file is pre-shuffled too
    instructions = {raw["asin"]: _instruction(rng, raw, by_query[raw["query"]]) for raw in raws}
    attributes = {
        raw["asin"]: {"attributes": raw["_attributes"], "instruction": instructions[raw["asin"]][0],
                      "instruction_attributes": instructions[raw["asin"]][1]}
        for raw in raws
    }
    with open(out_dir / PRODUCTS_FILE, "w", encoding="utf-8") as f:
        json.dump([{k: v for k, v in raw.items() if not k.startswith("_")} for raw in raws], f, ensure_ascii=False)
    with open(out_dir / ATTRIBUTES_FILE, "w", encoding="utf-8") as f:
        json.dump(attributes, f, ensure_ascii=False)
    catalog = load_catalog(out_dir / PRODUCTS_FILE, attributes, price_seed=config.seed)
    write_corpus(catalog, out_dir / SEARCH_CORPUS_FILE)
    goals = []
    for raw in raws:
        product = catalog[raw["asin"]]
        combos = list(itertools.product(*[[(g, v) for v in values] for g, values in product.options]))
        for combo in rng.sample(combos, k=min(config.goals_per_product, len(combos))):
            text, wanted = _instruction(rng, raw, by_query[raw["query"]])
            goals.append(make_goal(product, text + option_text(combo), wanted, combo, rng, raw["title_nouns"]))
    splits = split_goals(goals)
    save_goals([g for split in ("train", "validation", "test") for g in splits[split]], out_dir / GOALS_FILE)


def ensure_generated(config: GeneratorConfig = GeneratorConfig()) -> Path:
    """The directory of the generated shop for ``config``, generated first if absent.

    Checked against its manifest on every call; a damaged shop, or one an older mem1-gym wrote
    without a manifest, is regenerated with a warning. Written into a temporary sibling and renamed
    into place under a lock, so parallel workers never read a half-written shop and build it once.
    """
    return ensure_built(config.directory, lambda tmp: generate(config, tmp), "generated WebShop")
