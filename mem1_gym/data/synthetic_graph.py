"""Build the entity graph of a synthetic world from one seeded ``random.Random``.

``random.Random`` rather than numpy: generation draws millions of scalars, where the stdlib is
several times faster per call, and its integer streams are stable across Python versions, which
the byte-identical cache relies on.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Callable, Sequence, TypeVar

from mem1_gym.data.synthetic_entities import (
    COMPANY_SUFFIXES,
    INDUSTRIES,
    LATEST_YEAR,
    OCCUPATIONS,
    WORK_KINDS,
    City,
    Company,
    Country,
    Entities,
    Landmark,
    Person,
    University,
    Work,
    entity_counts,
    pick_split,
)
from mem1_gym.data.synthetic_names import NameFactory, demonym, initial_alias

T = TypeVar("T")
_TRIES = 24  # random candidates tried before a relation is left empty
_TITLE_NOUNS = (
    "Harbour", "Lanterns", "Winter", "Orchard", "Crossing", "Tide", "Bells", "Garden", "Mirror",
    "Falcon", "Lighthouse", "Ferry", "Embers", "Vineyard", "Archive", "Causeway", "Glacier", "Weaver",
)  # fmt: skip
_TITLE_ADJECTIVES = ("Silent", "Last", "Distant", "Scarlet", "Hollow", "Northern", "Quiet", "Gilded", "Drowned")
_COUNTRY_FORMS = ("Kingdom of {}", "Republic of {}", "Federation of {}", "Principality of {}", "Grand Duchy of {}")


def build_entities(
    rng: random.Random, n_passages: int, split_fractions: Sequence[float], distractor_rate: float
) -> Entities:
    """Create every entity and relation; the order of calls fixes the random stream (do not reorder)."""
    counts = entity_counts(n_passages)
    names = NameFactory(rng)
    world = Entities([], [], [], [], [], [], [], [])

    def split() -> str:
        return pick_split(rng, split_fractions)

    def twin() -> bool:
        return rng.random() < distractor_rate

    _build_countries(rng, names, world, counts["country"], split)
    _build_landmarks(rng, names, world, counts["river"] + counts["mountain"], counts["mountain"], split)
    _build_cities(rng, names, world, counts["city"], split, twin)
    _build_persons(rng, names, world, counts["person"], split, twin)
    _link_persons(rng, world)
    _build_universities(rng, names, world, counts["university"], split)
    _attend_universities(rng, world)
    _build_companies(rng, names, world, counts["company"], twin)
    _build_works(rng, names, world, counts["work"], twin)
    _assign_climbers(rng, world)
    ambiguous = Counter(initial_alias(p.name).lower() for p in world.persons)
    for person in world.persons:
        person.short_alias = ambiguous[initial_alias(person.name).lower()] == 1
    return world


def _find(rng: random.Random, pool: Sequence[T], ok: Callable[[T], bool]) -> T | None:
    """A random member of ``pool`` that satisfies ``ok`` (``_TRIES`` attempts), else None."""
    for _ in range(_TRIES if pool else 0):
        candidate = rng.choice(pool)
        if ok(candidate):
            return candidate
    return None


def _by_split(items: Sequence[T]) -> dict[str, list[T]]:
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(item.split, []).append(item)
    return groups


def _build_countries(rng, names, world, n, split) -> None:
    for i in range(n):
        name = names.country()
        world.countries.append(
            Country(
                key=f"country:{i}", name=name, split=split(), long_name=rng.choice(_COUNTRY_FORMS).format(name),
                demonym=demonym(name), independence_year=rng.randint(1450, 1960),
                population=rng.randint(300, 90_000) * 1000,
            )
        )  # fmt: skip


def _build_landmarks(rng, names, world, n, n_mountains, split) -> None:
    for i in range(n):
        mountain = i < n_mountains
        form = "Mount {}" if mountain else "{} River"
        name = names.fresh(lambda: form.format(names.word()))
        countries = tuple(rng.sample(world.countries, 1 if mountain or rng.random() < 0.6 else 2))
        world.landmarks.append(
            Landmark(
                key=f"landmark:{i}", name=name, split=split(), kind="mountain" if mountain else "river",
                countries=countries, length_km=0 if mountain else rng.randint(60, 2900),
                height_m=rng.randint(1200, 7900) if mountain else 0,
            )
        )  # fmt: skip


def _build_cities(rng, names, world, n, split, twin) -> None:
    rivers_of: dict[str, list[Landmark]] = {}
    for landmark in world.landmarks:
        if landmark.kind == "river":
            for country in landmark.countries:
                rivers_of.setdefault(country.key, []).append(landmark)
    while len(world.cities) < n:
        i = len(world.cities)
        # Round-robin first so every country has a city (its capital).
        country = world.countries[i] if i < len(world.countries) else rng.choice(world.countries)
        rivers = rivers_of.get(country.key, [])
        city = City(
            key=f"city:{i}", name=names.place(), split=split(), country=country,
            founded_year=rng.randint(800, 1850), population=rng.randint(8, 4000) * 1000,
            river=rng.choice(rivers) if rivers and rng.random() < 0.6 else None,
        )  # fmt: skip
        world.cities.append(city)
        if country.capital is None:
            country.capital = city
        elif twin() and len(world.cities) < n:
            namesake = City(
                key=f"city:{i + 1}", name=names.place_namesake(city.name), split=city.split, country=country,
                founded_year=min(city.founded_year + rng.randint(5, 300), 1950), population=rng.randint(2, 300) * 1000,
                river=city.river,
            )  # fmt: skip
            world.cities.append(namesake)
            world.namesakes.append((city, namesake))


def _build_persons(rng, names, world, n, split, twin) -> None:
    while len(world.persons) < n:
        i = len(world.persons)
        full = names.person()
        given, surname = full.split(" ", 1)
        occupation, born_year, born_city = rng.choice(OCCUPATIONS), rng.randint(1700, 1965), rng.choice(world.cities)
        person = _person(rng, f"person:{i}", full, split(), occupation, born_year, born_city)
        world.persons.append(person)
        if twin() and len(world.persons) < n:
            # Same occupation and birthplace, a close birth year: only the name tells them apart.
            other = _person(
                rng, f"person:{i + 1}", names.person_namesake(given, surname), person.split, person.occupation,
                person.born_year + rng.choice((-1, 1)) * rng.randint(1, 9), person.born_city,
            )  # fmt: skip
            world.persons.append(other)
            world.namesakes.append((person, other))


def _person(rng, key, full, split, occupation, born_year, born_city) -> Person:
    given, surname = full.split(" ", 1)
    died = born_year + rng.randint(42, 96)
    alive = died > LATEST_YEAR
    died_city = None if alive else born_city if rng.random() < 0.4 else born_city.country.capital
    return Person(
        key=key, name=full, split=split, given=given, surname=surname, pronoun=rng.choice(("he", "she")),
        occupation=occupation, born_year=born_year, born_city=born_city,
        died_year=None if alive else died, died_city=died_city,
    )  # fmt: skip


def _link_persons(rng, world) -> None:
    """Mentors (15–45 years older) and spouses (within 12 years), inside each split."""
    for group in _by_split(world.persons).values():
        for person in group:
            if rng.random() < 0.6:
                person.mentor = _find(rng, group, lambda m: 15 <= person.born_year - m.born_year <= 45)
            if person.spouse is None and rng.random() < 0.5:
                free = lambda s: s is not person and s.spouse is None and abs(s.born_year - person.born_year) <= 12  # noqa: E731
                spouse = _find(rng, group, free)
                if spouse is not None:
                    person.spouse, spouse.spouse = spouse, person


def _build_universities(rng, names, world, n, split) -> None:
    founders = _by_split(world.persons)
    forms = (
        "University of {city}",
        "{city} Institute of Technology",
        "Royal Academy of {city}",
        "{surname} College",
        "{word} University",
        "{word} College",
    )
    for i in range(n):
        city, uni_split = rng.choice(world.cities), split()
        founder = _find(
            rng, founders.get(uni_split, []), lambda p: p.died_year is None or p.died_year - p.born_year >= 35
        )
        surname = founder.surname if founder else names.word()
        # A city may already have its "University of X": retries draw another form.
        name = names.fresh(
            lambda: rng.choice(forms).format(
                city=city.name, surname=surname, word=names.word() if rng.random() < 0.5 else surname
            )
        )
        founded = (
            founder.born_year + rng.randint(30, min(60, _active_span(founder))) if founder else rng.randint(1200, 1900)
        )
        world.universities.append(
            University(
                key=f"university:{i}", name=name, split=uni_split, city=city, founded_year=founded, founder=founder
            )
        )


def _attend_universities(rng, world) -> None:
    for person in world.persons:
        if rng.random() < 0.8:
            person.university = _find(rng, world.universities, lambda u: u.founded_year <= person.born_year + 17)


def _build_companies(rng, names, world, n, twin) -> None:
    makers = [p for p in world.persons if p.occupation not in WORK_KINDS and _active_span(p) >= 22]
    same_split = _by_split(makers)
    while len(world.companies) < n:
        founder = rng.choice(makers)
        industry, suffix = rng.choice(INDUSTRIES), rng.choice(COMPANY_SUFFIXES)
        stem = founder.surname if rng.random() < 0.3 else names.word()
        hq = founder.born_city if rng.random() < 0.5 else rng.choice(world.cities)
        company = _company(rng, names, f"company:{len(world.companies)}", stem, industry, suffix, founder, hq)
        world.companies.append(company)
        if twin() and len(world.companies) < n:
            # Same stem and city, another trade and founder: "Velmora Shipping" vs "Velmora Trading".
            other_founder = _find(rng, same_split[founder.split], lambda p: p is not founder) or founder
            other_industry = rng.choice([x for x in INDUSTRIES if x != industry])
            other = _company(
                rng, names, f"company:{len(world.companies)}", stem, other_industry, suffix, other_founder, hq
            )
            world.companies.append(other)
            world.namesakes.append((company, other))


def _active_span(person: Person) -> int:
    return (person.died_year or LATEST_YEAR) - person.born_year


def _company(rng, names, key, stem, industry, suffix, founder, hq) -> Company:
    # The short name ("Velmora Shipping") is an answer alias, so it is reserved like a title;
    # when the stem is taken for this trade (a common surname), a fresh invented stem replaces it.
    stems = iter([stem])
    short = names.fresh(lambda: f"{next(stems, None) or names.word()} {industry}")
    name = names.fresh(lambda: f"{short} {suffix}")
    founded = founder.born_year + rng.randint(22, min(55, _active_span(founder)))
    return Company(
        key=key, name=name, split=founder.split, short_name=short, industry=industry,
        founded_year=founded, founder=founder, headquarters=hq, employees=rng.randint(2, 900) * 50,
    )  # fmt: skip


def _build_works(rng, names, world, n, twin) -> None:
    creators = [p for p in world.persons if p.occupation in WORK_KINDS and _active_span(p) >= 25]
    while len(world.works) < n:
        creator = rng.choice(creators)
        word = names.word()
        work = _work(rng, names, f"work:{len(world.works)}", word, creator)
        world.works.append(work)
        if twin() and len(world.works) < n:
            # Same invented word in the title, same kind of work, often by the same creator; always
            # in the same split, since a work's split is its creator's.
            other_creator = creator
            if rng.random() < 0.5:
                peer = _find(rng, creators, lambda p: p.occupation == creator.occupation and p.split == creator.split)
                other_creator = peer or creator
            other = _work(rng, names, f"work:{len(world.works)}", word, other_creator)
            world.works.append(other)
            world.namesakes.append((work, other))


def _work(rng, names, key, word, creator) -> Work:
    kind, verb = WORK_KINDS[creator.occupation]
    forms = ("The {noun} of {word}", "{word} {noun}", "The {adj} {noun} of {word}", "{adj} {word}", "{word}")

    def title() -> str:
        return rng.choice(forms).format(noun=rng.choice(_TITLE_NOUNS), adj=rng.choice(_TITLE_ADJECTIVES), word=word)

    year = creator.born_year + rng.randint(25, min(70, _active_span(creator)))
    return Work(key=key, name=names.fresh(title), split=creator.split, kind=kind, verb=verb, year=year, creator=creator)


def _assign_climbers(rng, world) -> None:
    climbers = _by_split([p for p in world.persons if _active_span(p) >= 45 and p.born_year >= 1740])
    for mountain in world.landmarks:
        if mountain.kind == "mountain":
            mountain.climber = _find(rng, climbers.get(mountain.split, []), lambda p: True)
            if mountain.climber is not None:
                mountain.ascent_year = mountain.climber.born_year + rng.randint(20, 44)
