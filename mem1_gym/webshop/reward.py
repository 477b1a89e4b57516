"""WebShop's purchase reward, exactly (reference/webshop.md §7; the paper's Eq. 1).

    R = r_type · (N_att + N_opt + 1[price ≤ price_upper]) / (|attributes| + |goal options| + 1)

* ``N_att``: goal attributes matched by a product attribute with rapidfuzz ``token_set_ratio > 85``,
  or found as a substring of the lower-cased title, bullet points or description.
* ``N_opt``: goal option values matched (``token_set_ratio > 85``) by a selected option value, both
  first passed through :func:`normalize_color`.
* ``r_type``: 1, or 0.5 when neither the query, nor ≥ 2 breadcrumb levels, nor > 20 % of the goal
  title's nouns match; then 0.1 below 10 % of the nouns and 0 at none (later rules override).

The nouns are stored with each product and goal at generation time; only for original files without
them are they derived here (spaCy's ``en_core_web_sm`` when installed, as the original, else a
documented approximation), so no NLP model is needed at run time.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from rapidfuzz import fuzz

from mem1_gym.webshop.catalog import Product

if TYPE_CHECKING:  # goals.py imports this module
    from mem1_gym.webshop.goals import Goal

FUZZY_THRESHOLD = 85  # PR #8 of WebShop replaced exact matching by fuzzy matching at "> 85"

# Colour words: an option is reduced to the first of these it contains, so "bright navy" and
# "navy" compare equal. Own list, the same idea and size as the original's table.
COLOR_SET = (
    "almond", "amber", "apricot", "aqua", "army green", "ash", "azure", "beige", "berry", "black", "blonde",
    "blue", "blush", "bone", "bronze", "brown", "burgundy", "camel", "camo", "caramel", "champagne",
    "charcoal", "cherry", "chestnut", "chocolate", "clear", "coffee", "copper", "coral", "cream", "denim",
    "ebony", "emerald", "espresso", "fuchsia", "gold", "granite", "grape", "graphite", "gray", "green",
    "grey", "heather", "indigo", "ivory", "jade", "khaki", "lavender", "lemon", "leopard", "lilac", "lime",
    "magenta", "mahogany", "maroon", "mauve", "midnight", "mint", "mocha", "multicolor", "mustard", "navy",
    "nude", "oak", "olive", "orange", "peach", "pearl", "pewter", "pink", "platinum", "plum", "purple",
    "rainbow", "red", "rose", "ruby", "rust", "sage", "sand", "sapphire", "scarlet", "silver", "slate",
    "smoke", "steel", "stone", "tan", "taupe", "teal", "turquoise", "violet", "walnut", "wheat", "white",
    "wine", "yellow",
)


def normalize_color(value: str) -> str:
    """The first colour of :data:`COLOR_SET` that is a substring of ``value``, else ``value``."""
    for color in COLOR_SET:
        if color in value:
            return color
    return value


@dataclass(frozen=True)
class RewardBreakdown:
    """The reward and its components, under the original's names (``info["reward_info"]``)."""

    reward: float
    r_type: float
    query_match: bool
    category_match: bool
    title_score: float
    r_att: float
    n_att: int
    w_att: float
    r_option: float | None  # None when the goal has no options
    n_option: int
    w_option: float
    r_price: bool
    w_price: float

    def as_dict(self) -> dict:
        return asdict(self)


def type_reward(product: Product, goal: Goal) -> tuple[float, bool, bool, float]:
    """(r_type, query_match, category_match, title_score) of buying ``product`` for ``goal``."""
    query_match = product.query == goal.query
    bought = {level.strip() for level in product.product_category.split("›")}
    wanted = {level.strip() for level in goal.product_category.split("›")}
    category_match = len(bought & wanted) >= 2
    if not goal.name_nouns:
        title_score = 0.2
    else:
        title_score = len(set(product_nouns(product)) & set(goal.name_nouns)) / len(goal.name_nouns)
    r_type = 1.0
    if not (query_match or category_match or title_score > 0.2):
        r_type = 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return r_type, query_match, category_match, title_score


def attribute_matches(product: Product, attributes: Sequence[str]) -> int:
    """How many goal attributes the product has (fuzzy attribute match, else a text substring)."""
    title, description = product.title.lower(), product.description.lower()
    bullets = " ".join(product.bullet_points).lower()
    matches = 0
    for wanted in attributes:
        if any(fuzz.token_set_ratio(have, wanted) > FUZZY_THRESHOLD for have in product.attributes) or wanted in title or wanted in bullets or wanted in description:
            matches += 1
    return matches


def option_matches(selected: Sequence[str], wanted: Sequence[str]) -> int:
    """How many goal option values a selected value matches (after colour normalisation)."""
    chosen = [normalize_color(str(value)) for value in selected]
    matches = 0
    for value in (normalize_color(str(v)) for v in wanted):
        if any(fuzz.token_set_ratio(have, value) > FUZZY_THRESHOLD for have in chosen):
            matches += 1
    return matches


def get_reward(product: Product, goal: Goal, price: float, options: Mapping[str, str]) -> RewardBreakdown:
    """The reward of buying ``product`` at ``price`` with the selected ``options`` ({group: value})."""
    r_type, query_match, category_match, title_score = type_reward(product, goal)
    n_att = attribute_matches(product, goal.attributes) if goal.attributes else 0
    n_opt = option_matches(list(options.values()), goal.option_values) if goal.option_values else 0
    r_price = price <= goal.price_upper
    denominator = len(goal.attributes) + len(goal.option_values) + 1
    return RewardBreakdown(
        reward=(n_att + n_opt + float(r_price)) / denominator * r_type,
        r_type=r_type,
        query_match=query_match,
        category_match=category_match,
        title_score=title_score,
        r_att=n_att / len(goal.attributes) if goal.attributes else 0.0,
        n_att=n_att,
        w_att=len(goal.attributes) / denominator,
        r_option=n_opt / len(goal.option_values) if goal.option_values else None,
        n_option=n_opt,
        w_option=len(goal.option_values) / denominator,
        r_price=r_price,
        w_price=1 / denominator,
    )


def product_nouns(product: Product) -> tuple[str, ...]:
    """The title's nouns: stored ones when present, else :func:`title_nouns` of the title."""
    return product.title_nouns if product.title_nouns is not None else title_nouns(product.title)


# Fallback only (original files carry no nouns): words that are never nouns in product titles.
_NON_NOUNS = frozenset(
    ["a", "an", "the", "and", "or", "of", "for", "with", "in", "on", "to", "by", "from", "at", "as", "is", "are", "be", "this", "that", "these", "those", "it", "its", "your", "our", "new", "best", "great", "premium", "quality", "natural", "organic", "professional", "portable", "compatible", "adjustable", "large", "small", "medium", "mini", "extra", "super", "ultra", "soft", "light", "dark", "heavy", "high", "low", "long", "short", "slim", "thin", "thick", "wide", "waterproof", "lightweight", "durable", "comfortable", "classic", "modern", "vintage", "casual", "black", "white", "red", "blue", "green", "pink", "grey", "gray", "brown", "purple", "yellow", "orange", "silver", "gold", "clear", "men's", "women's", "mens", "womens", "kids'", "unisex"]
)
_WORD_RE = re.compile(r"[a-z][a-z'&-]*")


@functools.lru_cache(maxsize=1)
def _spacy():
    try:
        import spacy

        return spacy.load("en_core_web_sm", disable=["parser", "ner", "lemmatizer"])
    except (ImportError, OSError):  # not installed, or the model is missing
        return None


@functools.lru_cache(maxsize=65536)
def title_nouns(title: str) -> tuple[str, ...]:
    """Nouns of a title: spaCy ``en_core_web_sm`` NOUN/PROPN tokens when spaCy and the model are
    installed (the original's definition), else lower-cased alphabetic words minus a list of
    function words and common adjectives (an approximation: titles are mostly nouns)."""
    nlp = _spacy()
    if nlp is not None:
        return tuple(t.text.lower() for t in nlp(title) if t.pos_ in ("NOUN", "PROPN"))
    return tuple(w for w in _WORD_RE.findall(title.lower()) if w not in _NON_NOUNS)
