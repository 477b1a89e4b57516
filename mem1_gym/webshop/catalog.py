"""Products: WebShop's raw records turned into :class:`Product` with the original's processing rules.

One code path reads the original files (``items_shuffle*.json`` + ``items_ins_v2*.json``) and the
generated default, which is written in the same format. The product file is streamed
(:mod:`mem1_gym.webshop.jsonstream`), so the 5 GB full catalogue never sits in memory as JSON.

Processing follows ``engine.load_products`` (reference/webshop.md §2.1): records whose ASIN is
``"nan"`` or longer than 10 characters are dropped, duplicates keep the first; option names are
lower-cased, values stripped, lower-cased and ``/`` becomes ``" | "``; a missing price is $100.
One deliberate change: the purchase price of a ranged listing ("$10.99 - $19.99") is a draw inside
the range seeded by ``price_seed`` and the ASIN, where the original drew it unseeded at load time
(so instructions and prices differed between processes: WebShop issue #45).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mem1_gym.webshop.jsonstream import iter_json_array, iter_json_object

MISSING_PRICE = 100.0
DUMMY_ATTRIBUTE = "DUMMY_ATTR"
_NOT_PRICE_RE = re.compile(r"[^0-9.]")


@dataclass(frozen=True)
class Review:
    """One customer review (the original's review loading is disabled; generated products have some)."""

    rating: int
    title: str
    body: str


@dataclass(frozen=True)
class Product:
    """A processed product: what the pages show and what the reward reads."""

    asin: str
    title: str
    description: str
    bullet_points: tuple[str, ...]
    pricing: tuple[float, ...]  # 1 price, or the low and high end of a range
    price: float  # what buying costs (a seeded draw inside a range)
    options: tuple[tuple[str, tuple[str, ...]], ...]  # (group name, values) in page order
    attributes: tuple[str, ...]
    category: str
    query: str
    product_category: str
    title_nouns: tuple[str, ...] | None = None  # stored at generation time (duplicates kept); None -> derived
    reviews: tuple[Review, ...] = field(default=())

    @property
    def price_text(self) -> str:
        """The displayed price: "$10.99" or "$10.99 to $19.99" (WebShop's ``Price`` field)."""
        return " to ".join(f"${p:.2f}" for p in self.pricing[:2])

    @property
    def rating_text(self) -> str:
        if not self.reviews:
            return "N.A."
        return f"{sum(r.rating for r in self.reviews) / len(self.reviews):.1f}"

    def option_values(self, group: str) -> tuple[str, ...]:
        return dict(self.options).get(group, ())


def parse_pricing(pricing: Any) -> tuple[float, ...]:
    """``"$10.99 - $19.99"`` -> (10.99, 19.99); nothing usable -> (100.0,) as the original."""
    if not isinstance(pricing, str) or not pricing.strip():
        return (MISSING_PRICE,)
    prices = []
    for part in pricing.split("$"):
        try:
            prices.append(float(_NOT_PRICE_RE.sub("", part)))
        except ValueError:  # "" before the first "$", or stray dots
            continue
    return tuple(prices[:2]) if prices else (MISSING_PRICE,)


def purchase_price(asin: str, pricing: tuple[float, ...], price_seed: int) -> float:
    """The price charged for ``asin``: the price, or a seeded uniform draw inside a range (cents)."""
    if len(pricing) < 2:
        return pricing[0]
    low, high = sorted(pricing[:2])
    return round(random.Random(f"{price_seed}:{asin}").uniform(low, high), 2)


def _options(raw: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(raw, Mapping):
        return ()
    groups = []
    for name, contents in raw.items():
        if not contents:
            continue
        values = []
        for item in contents:
            value = item.get("value") if isinstance(item, Mapping) else item
            if isinstance(value, str) and value.strip():
                values.append(value.strip().lower().replace("/", " | "))
        if values:
            groups.append((str(name).lower(), tuple(dict.fromkeys(values))))
    return tuple(groups)


def _reviews(raw: Any) -> tuple[Review, ...]:
    if not isinstance(raw, list):
        return ()
    return tuple(
        Review(int(r.get("rating", 0)), str(r.get("title", "")), str(r.get("body", "")))
        for r in raw
        if isinstance(r, Mapping)
    )


def process_product(raw: Mapping[str, Any], attributes: Mapping[str, Any] | None, price_seed: int) -> Product | None:
    """One raw ``items_shuffle`` record -> :class:`Product`; None when the original drops it."""
    asin = raw.get("asin")
    if not isinstance(asin, str) or asin == "nan" or len(asin) > 10 or not asin:
        return None
    bullets = raw.get("small_description") or []
    if isinstance(bullets, str):
        bullets = [bullets]
    pricing = parse_pricing(raw.get("pricing"))
    attrs = (attributes or {}).get(asin, {})
    product_attributes = attrs.get("attributes") if isinstance(attrs, Mapping) else None
    nouns = raw.get("title_nouns")
    return Product(
        asin=asin,
        title=str(raw.get("name") or ""),
        description=str(raw.get("full_description") or ""),
        bullet_points=tuple(str(b) for b in bullets),
        pricing=pricing,
        price=purchase_price(asin, pricing, price_seed),
        options=_options(raw.get("customization_options")),
        attributes=tuple(product_attributes) if product_attributes else (DUMMY_ATTRIBUTE,),
        category=str(raw.get("category") or ""),
        query=str(raw.get("query") or "").lower().strip(),
        product_category=str(raw.get("product_category") or ""),
        title_nouns=tuple(str(n).lower() for n in nouns) if isinstance(nouns, list) else None,
        reviews=_reviews(raw.get("reviews")),
    )


class Catalog:
    """The products of a shop, by ASIN, in file order (read-only; shared by every env of a process)."""

    def __init__(self, products: Iterable[Product]):
        self.products: dict[str, Product] = {}
        for product in products:
            self.products.setdefault(product.asin, product)  # duplicates: the first wins, as the original
        if not self.products:
            raise ValueError("the catalogue is empty: no product record had a usable asin")

    def __len__(self) -> int:
        return len(self.products)

    def __getitem__(self, asin: str) -> Product:
        return self.products[asin]

    def __contains__(self, asin: object) -> bool:
        return asin in self.products

    def __iter__(self) -> Iterator[Product]:
        return iter(self.products.values())


def load_attributes(path: str | Path | None) -> dict[str, Any]:
    """``items_ins_v2*.json`` ({asin: {attributes, instruction, instruction_attributes}}), streamed."""
    if path is None:
        return {}
    return dict(iter_json_object(path))


def load_catalog(
    products_path: str | Path,
    attributes: Mapping[str, Any] | None = None,
    *,
    limit: int | None = None,
    price_seed: int = 0,
) -> Catalog:
    """Stream ``products_path`` (a JSON array of raw records) into a :class:`Catalog`.

    ``limit`` keeps the first N usable products (the original's ``num_products``).
    """

    def products() -> Iterator[Product]:
        seen: set[str] = set()
        for raw in iter_json_array(products_path):
            if limit is not None and len(seen) >= limit:
                return
            product = process_product(raw, attributes, price_seed) if isinstance(raw, Mapping) else None
            if product is not None and product.asin not in seen:
                seen.add(product.asin)
                yield product

    return Catalog(products())
