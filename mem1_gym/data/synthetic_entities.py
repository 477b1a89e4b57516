"""The entity graph of the synthetic encyclopedia: who was born where, who founded what, and when.

Splits are assigned here, before any question exists, so that questions of different splits are
about different entities (see :func:`build_entities`). A person, the organisations they founded
and the works they made share one split; every link from one person or organisation to another
person (mentor, spouse, founder, first climber) stays inside a split. Places (countries, cities,
rivers, mountains) are shared background that every split may mention.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Sequence

from mem1_gym.data.synthetic_names import initial_alias

SPLITS = ("train", "validation", "test")
LATEST_YEAR = 2020  # the world's "now": nobody dies and nothing is founded or happens after it
OCCUPATIONS = (
    "shipbuilder", "painter", "physicist", "architect", "engineer", "botanist", "merchant",
    "chemist", "poet", "sculptor", "cartographer", "industrialist", "mathematician", "astronomer",
    "economist", "film director", "novelist", "composer", "banker", "printer",
)  # fmt: skip
# What a creator makes, and the verb the passages and questions use for it.
WORK_KINDS = {
    "film director": ("film", "directed"),
    "novelist": ("novel", "written"),
    "composer": ("opera", "composed"),
}
INDUSTRIES = (
    "Shipping", "Trading", "Textiles", "Ironworks", "Railway", "Brewing", "Insurance", "Publishing",
    "Mining", "Optics", "Porcelain", "Salt", "Timber", "Glassworks", "Telegraph", "Shipyards",
)  # fmt: skip
COMPANY_SUFFIXES = ("Company", "Company", "Group", "Corporation", "Works", "Limited")
# Passages per article; the entity counts are derived from WorldConfig.n_passages with these.
PASSAGES_PER = {
    "country": 3,
    "city": 2,
    "river": 2,
    "mountain": 2,
    "university": 2,
    "person": 3,
    "company": 3,
    "work": 2,
}
# Share of all passages spent on each kind (sums to 1, so counts * PASSAGES_PER >= n_passages).
PASSAGE_SHARES = {
    "country": 0.01, "city": 0.08, "river": 0.025, "mountain": 0.025, "university": 0.04,
    "person": 0.45, "company": 0.17, "work": 0.20,
}  # fmt: skip


@dataclass(eq=False)
class Entity:
    """One article of the encyclopedia; ``docs`` maps a section name to its passage id."""

    key: str  # "person:17", unique
    name: str  # the article title, unique in the world
    split: str
    docs: dict[str, str] = field(default_factory=dict)

    @property
    def aliases(self) -> tuple[str, ...]:
        return (self.name,)


@dataclass(eq=False)
class Country(Entity):
    long_name: str = ""  # "Kingdom of Valdoria"
    demonym: str = ""
    independence_year: int = 0
    population: int = 0
    capital: "City | None" = None

    @property
    def aliases(self) -> tuple[str, ...]:
        return (self.name, self.long_name)


@dataclass(eq=False)
class City(Entity):
    country: Country | None = None
    founded_year: int = 0
    population: int = 0
    river: "Landmark | None" = None

    @property
    def aliases(self) -> tuple[str, ...]:
        return (self.name, f"{self.name}, {self.country.name}")


@dataclass(eq=False)
class Landmark(Entity):
    """A river (``length_km``) or a mountain (``height_m``, first ascent)."""

    kind: str = "river"
    countries: tuple[Country, ...] = ()
    length_km: int = 0
    height_m: int = 0
    ascent_year: int = 0
    climber: "Person | None" = None


@dataclass(eq=False)
class Person(Entity):
    given: str = ""
    surname: str = ""
    pronoun: str = "he"
    occupation: str = ""
    born_year: int = 0
    born_city: City | None = None
    died_year: int | None = None  # None: still alive
    died_city: City | None = None
    university: "University | None" = None
    mentor: "Person | None" = None
    spouse: "Person | None" = None
    short_alias: bool = True  # "A. Venn" is unambiguous in this world

    @property
    def aliases(self) -> tuple[str, ...]:
        return (self.name, initial_alias(self.name)) if self.short_alias else (self.name,)


@dataclass(eq=False)
class University(Entity):
    city: City | None = None
    founded_year: int = 0
    founder: Person | None = None


@dataclass(eq=False)
class Company(Entity):
    short_name: str = ""  # "Velmora Shipping" for "Velmora Shipping Company"
    industry: str = ""
    founded_year: int = 0
    founder: Person | None = None
    headquarters: City | None = None
    employees: int = 0

    @property
    def aliases(self) -> tuple[str, ...]:
        return (self.name, self.short_name) if self.short_name != self.name else (self.name,)


@dataclass(eq=False)
class Work(Entity):
    kind: str = "film"
    verb: str = "directed"
    year: int = 0
    creator: Person | None = None


@dataclass
class Entities:
    """Every entity of a world, by kind, in creation order (the order of the corpus)."""

    countries: list[Country]
    cities: list[City]
    landmarks: list[Landmark]
    universities: list[University]
    persons: list[Person]
    companies: list[Company]
    works: list[Work]
    # Near-namesake pairs (original key, distractor key): comparison questions favour them.
    namesakes: list[tuple[Entity, Entity]]

    def all(self) -> list[Entity]:
        return [
            *self.countries,
            *self.cities,
            *self.landmarks,
            *self.universities,
            *self.persons,
            *self.companies,
            *self.works,
        ]


def entity_counts(n_passages: int) -> dict[str, int]:
    """Articles per kind so that the world has at least ``n_passages`` passages."""
    counts = {kind: math.ceil(n_passages * share / PASSAGES_PER[kind]) for kind, share in PASSAGE_SHARES.items()}
    counts["country"] = max(counts["country"], 4)
    counts["city"] = max(counts["city"], 2 * counts["country"])
    return counts


def pick_split(rng: random.Random, fractions: Sequence[float]) -> str:
    return rng.choices(SPLITS, weights=fractions)[0]
