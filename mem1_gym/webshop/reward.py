"""WebShop's purchase reward, computed as the original computes it (reference/webshop.md §7; the paper's Eq. 1).

    R = r_type · (N_att + N_opt + 1[price ≤ price_upper]) / (|attributes| + |goal options| + 1)

* ``N_att``: goal attributes matched by a product attribute with :func:`token_set_ratio` > 85, or
  found as a substring of the lower-cased title, bullet points or description.
* ``N_opt``: goal options matched (:func:`token_set_ratio` > 85) by a selected option value, both
  first passed through :func:`normalize_color`.
* ``r_type``: 1, or 0.5 when neither the query, nor ≥ 2 breadcrumb levels, nor > 20 % of the goal
  title's nouns match; then 0.1 below 10 % of the nouns and 0 at none (later rules override).

The fuzzy matcher is the original's: thefuzz 0.19 ``token_set_ratio`` with its default string
processing and integer scores (:func:`full_process`, :func:`token_set_ratio`), so ``Black`` matches
``black`` and ``4 ounce (pack of 2)`` matches ``pack of 2``. Colours are reduced with the original's
table, in its order (``dark grey`` → ``dark``). A synthetic goal's options reach the original's
matcher as (name, value) pairs, and so they do here (see :class:`RewardConfig`).

Title nouns are stored with each generated product and goal (brand, head noun, audience: fewer than
spaCy finds, so ``r_type`` is lower than the original's on 11.6 % of same-type purchases). Only for
original files without them are they derived here: spaCy's ``en_core_web_sm`` when installed (the
original's definition), else :func:`approximate_title_nouns`. On the generated catalogue's 1,000
titles the approximation gives spaCy's noun set for 76 % of titles and the same ``r_type`` on 99.9 %
of same-type purchases and 98.3 % of random ones (spaCy 3.8 ``en_core_web_sm``; the original
pinned 3.4, whose tags we could not run).

Deliberate departures from the original are options of :class:`RewardConfig`, all off by default.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from difflib import SequenceMatcher
from typing import TYPE_CHECKING

from mem1_gym.webshop.catalog import Product

if TYPE_CHECKING:  # goals.py imports this module
    from mem1_gym.webshop.goals import Goal

FUZZY_THRESHOLD = 85  # PR #8 of WebShop replaced exact matching by fuzzy matching at "> 85"

# The original's colour table (web_agent_site/engine/normalize.py; reference/webshop.md §7.1), in
# its order: the first entry found wins, so "dark grey" -> "dark" and "123alabaster" -> "alabaster".
COLOR_SET = (
    "alabaster", "apricot", "aqua", "ash", "asphalt", "azure", "banana", "beige", "black", "blue", "blush",
    "bordeaux", "bronze", "brown", "burgundy", "camel", "camo", "caramel", "champagne", "charcoal", "cheetah",
    "chestnut", "chocolate", "christmas", "coffee", "cognac", "copper", "coral", "cranberry", "cream", "crystal",
    "dark", "denim", "eggplant", "elephant", "espresso", "fuchsia", "gold", "granite", "grape", "graphite",
    "grass", "gray", "green", "grey", "heather", "indigo", "ivory", "ivy", "khaki", "lavender", "lemon",
    "leopard", "light", "lilac", "lime", "magenta", "maroon", "mauve", "merlot", "midnight", "mint", "mocha",
    "multicolor", "mushroom", "mustard", "natural", "navy", "nude", "olive", "orange", "peach", "pewter", "pink",
    "plum", "purple", "rainbow", "red", "rose", "royal", "rust", "sand", "sapphire", "seashell", "silver",
    "skull", "slate", "steel", "stone", "stonewash", "sunflower", "tan", "taupe", "teal", "tiger", "turquoise",
    "violet", "walnut", "wheat", "white", "wine", "yellow",
)

GoalOption = str | tuple[str, str]  # a human goal's value, or a synthetic goal's (name, value)


@dataclass(frozen=True)
class RewardConfig:
    """Departures from the original's reward; the defaults compute exactly what the original does."""

    option_values_only: bool = False
    """Compare a named (synthetic or generated) goal option by its value alone. The original passes
    such options as (name, value) pairs (``goal_options.items()``): a colour is then recognised only
    when it is the whole value, and the fuzzy matcher sees "size large", so a selected "x-large"
    does not match a goal "large" while it does match when values alone are compared."""


def normalize_color(value: GoalOption) -> GoalOption:
    """The first colour of :data:`COLOR_SET` contained in ``value``, else ``value``. Like the
    original, "contained" is Python's ``in``: a substring of a string, but an *element* of a pair."""
    for color in COLOR_SET:
        if color in value:
            return color
    return value


# thefuzz 0.19's default processing (reference/webshop.md §7.1): characters U+0080-U+00FF are
# deleted ("café" -> "caf"; other non-ASCII characters stay), every non-word character (regex \W,
# so "_" is kept) becomes a space, then the text is lower-cased and stripped. A pair is first
# turned into its repr, "('size', 'large')" -> "size large", as the original's str() does.
_LATIN1_SUPPLEMENT = dict.fromkeys(range(0x80, 0x100))
_NON_WORD_RE = re.compile(r"\W")


def full_process(value: GoalOption) -> str:
    """The string the original's matcher compares (thefuzz ``full_process(force_ascii=True)``)."""
    text = value if isinstance(value, str) else str(value)
    return _NON_WORD_RE.sub(" ", text.translate(_LATIN1_SUPPLEMENT)).lower().strip()


def _ratio(a: str, b: str) -> int:
    # thefuzz 0.19 without python-Levenshtein, as the original's requirements.txt installs it:
    # difflib's matching blocks (not an edit distance), rounded half-to-even to an integer, so a
    # score of 85.4 is 85 and fails "> 85".
    if a == b:
        return 100
    if not a or not b:
        return 0
    return round(100 * SequenceMatcher(None, a, b).ratio())


def token_set_ratio(a: GoalOption, b: GoalOption) -> int:
    """The original's ``fuzz.token_set_ratio(a, b)``: 0-100, an integer; argument order matters."""
    p1, p2 = full_process(a), full_process(b)
    if not p1 or not p2:
        return 0
    tokens1, tokens2 = set(p1.split()), set(p2.split())
    common = " ".join(sorted(tokens1 & tokens2))
    with_rest1 = f"{common} {' '.join(sorted(tokens1 - tokens2))}".strip()
    with_rest2 = f"{common} {' '.join(sorted(tokens2 - tokens1))}".strip()
    return max(_ratio(common, with_rest1), _ratio(common, with_rest2), _ratio(with_rest1, with_rest2))


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
        if any(token_set_ratio(have, wanted) > FUZZY_THRESHOLD for have in product.attributes) or wanted in title or wanted in bullets or wanted in description:
            matches += 1
    return matches


def option_matches(selected: Sequence[str], wanted: Sequence[GoalOption]) -> int:
    """How many goal options (values, or (name, value) pairs) a selected value matches, both sides
    colour-normalised first."""
    chosen = [normalize_color(value) for value in selected]
    targets = [normalize_color(want) for want in wanted]
    return sum(any(token_set_ratio(have, target) > FUZZY_THRESHOLD for have in chosen) for target in targets)


def goal_options(goal: Goal, config: RewardConfig = RewardConfig()) -> list[GoalOption]:
    """The goal's options as the original's matcher receives them: a human goal's values (group "")
    as strings, a named option as its (name, value) pair unless ``config.option_values_only``."""
    return [value if not group or config.option_values_only else (group, value) for group, value in goal.options]


def get_reward(product: Product, goal: Goal, price: float, options: Mapping[str, str],
               config: RewardConfig = RewardConfig()) -> RewardBreakdown:
    """The reward of buying ``product`` at ``price`` with the selected ``options`` ({group: value})."""
    r_type, query_match, category_match, title_score = type_reward(product, goal)
    n_att = attribute_matches(product, goal.attributes) if goal.attributes else 0
    n_opt = option_matches(list(options.values()), goal_options(goal, config)) if goal.options else 0
    r_price = price <= goal.price_upper
    denominator = len(goal.attributes) + len(goal.options) + 1
    return RewardBreakdown(
        reward=(n_att + n_opt + float(r_price)) / denominator * r_type,
        r_type=r_type,
        query_match=query_match,
        category_match=category_match,
        title_score=title_score,
        r_att=n_att / len(goal.attributes) if goal.attributes else 0.0,
        n_att=n_att,
        w_att=len(goal.attributes) / denominator,
        r_option=n_opt / len(goal.options) if goal.options else None,
        n_option=n_opt,
        w_option=len(goal.options) / denominator,
        r_price=r_price,
        w_price=1 / denominator,
    )


def product_nouns(product: Product) -> tuple[str, ...]:
    """The title's nouns: stored ones when present, else :func:`title_nouns` of the title."""
    return product.title_nouns if product.title_nouns is not None else title_nouns(product.title)


# Words spaCy does not tag NOUN/PROPN even in Title Case titles (prepositions, conjunctions,
# determiners, pronouns, auxiliaries, the possessive "s"). Adjectives are *not* listed: in Title
# Case spaCy tags "Soft", "Natural", "Black" as PROPN, and dropping them disagreed with it on 69 %
# of the generated titles (the measurement in the module docstring).
_CLOSED_CLASS = frozenset(
    "a an the and or nor but of for with in on to by from at as into onto over under up down off out about "
    "per via than is are be was were this that these those it its your our my his her their no not all any "
    "each every both s".split()
)
_TOKEN_RE = re.compile(r"[a-z0-9]+(?:\.[a-z0-9]+)*")  # "d.o.n." stays one token, as in spaCy
_NUMBER_UNIT_RE = re.compile(r"[0-9.]+(k|mm|cm|m|kg|g|lb|oz|ft|in)")  # spaCy splits "4K" into "4" "K"


def approximate_title_nouns(title: str) -> tuple[str, ...]:
    """spaCy's nouns of a product title, approximated without a model: lower-cased alphanumeric
    tokens minus numbers and closed-class words (a number's unit, "4k" -> "k", is kept)."""
    nouns = []
    for token in _TOKEN_RE.findall(title.lower()):
        unit = _NUMBER_UNIT_RE.fullmatch(token)
        token = unit.group(1) if unit else token
        if token not in _CLOSED_CLASS and not token.replace(".", "").isdigit():
            nouns.append(token)
    return tuple(nouns)


@functools.lru_cache(maxsize=1)
def _spacy():
    try:
        import spacy

        return spacy.load("en_core_web_sm", disable=["parser", "ner", "lemmatizer"])
    except (ImportError, OSError):  # not installed, or the model is missing
        return None


@functools.lru_cache(maxsize=65536)
def title_nouns(title: str) -> tuple[str, ...]:
    """Nouns of a title: spaCy ``en_core_web_sm`` NOUN/PROPN tokens, lower-cased, when spaCy and the
    model are installed (the original's definition), else :func:`approximate_title_nouns`."""
    nlp = _spacy()
    if nlp is not None:
        return tuple(t.text.lower() for t in nlp(title) if t.pos_ in ("NOUN", "PROPN"))
    return approximate_title_nouns(title)
