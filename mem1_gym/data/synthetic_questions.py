"""Questions over the synthetic encyclopedia: single-hop (NQ-like), bridge and comparison (HotpotQA-like).

Every question comes with its answer aliases and its *hops*: one keyword query per supporting
passage, in the order a reader needs them (a bridge question's second query names the entity
the first one found). A hop query is the entity's name plus the one keyword that the right
section of its article uses for the fact (mem1_gym.data.synthetic_text), e.g. "Aldric Venn born".
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from mem1_gym.data.synthetic_entities import (
    City,
    Company,
    Country,
    Entity,
    Landmark,
    Person,
    University,
    Work,
)
from mem1_gym.data.synthetic_text import release_verb
from mem1_gym.data.tasks import Hop, QAItem
from mem1_gym.protocol import normalize_answer

KINDS = ("single", "bridge", "comparison")
SOURCE = "synthetic"
_CREATOR_NOUN = {"film": "director", "novel": "author", "opera": "composer"}
_CREATOR_VERB = {"film": "directed", "novel": "wrote", "opera": "composed"}


@dataclass(frozen=True)
class Draft:
    """A question before it gets an id: what a template produced for one subject."""

    kind: str
    question: str
    answers: tuple[str, ...]
    hops: tuple[Hop, ...]


def gives_away(draft: Draft) -> bool:
    """True when the question names its own answer ("Where was the founder of the University of
    Tarsen born?" when the founder was born in Tarsen): such a draft is not asked. A comparison
    always names its answer, one of the two candidates."""
    if draft.kind == "comparison":
        return False
    question = f" {normalize_answer(draft.question)} "
    return any(f" {normalize_answer(alias)} " in question for alias in draft.answers)


def _hop(entity: Entity, section: str, keyword: str, answer: str) -> Hop:
    return Hop(query=f"{entity.name} {keyword}", answer=answer, doc_id=entity.docs[section])


def _year(value: int) -> tuple[str, ...]:
    return (str(value),)


# ---- single-hop facts: (question wording, answers, hop) per subject -----------------------------
# Each fact function returns None when the subject lacks the relation (no spouse, no founder...).

Fact = tuple[str, tuple[str, ...], Hop]


def _born_city(p: Person, rng) -> Fact:
    q = rng.choice((f"In which city was {p.name} born?", f"Where was {p.name} born?"))
    return q, p.born_city.aliases, _hop(p, "overview", "born", p.born_city.name)


def _born_year(p: Person, rng) -> Fact:
    q = rng.choice((f"In what year was {p.name} born?", f"When was {p.name} born?"))
    return q, _year(p.born_year), _hop(p, "overview", "born", str(p.born_year))


def _died_year(p: Person, rng) -> Fact | None:
    if p.died_year is None:
        return None
    return f"In what year did {p.name} die?", _year(p.died_year), _hop(p, "personal life", "died", str(p.died_year))


def _university(p: Person, rng) -> Fact | None:
    if p.university is None:
        return None
    q = rng.choice((f"At which university did {p.name} study?", f"Where did {p.name} study?"))
    return q, p.university.aliases, _hop(p, "career", "studied", p.university.name)


def _spouse(p: Person, rng) -> Fact | None:
    if p.spouse is None:
        return None
    q = rng.choice((f"Who was {p.name} married to?", f"Whom did {p.name} marry?"))
    return q, p.spouse.aliases, _hop(p, "personal life", "married", p.spouse.name)


def _mentor(p: Person, rng) -> Fact | None:
    if p.mentor is None:
        return None
    return f"Who was the mentor of {p.name}?", p.mentor.aliases, _hop(p, "career", "mentor", p.mentor.name)


def _company_year(c: Company, rng) -> Fact:
    q = rng.choice((f"In what year was {c.name} founded?", f"When was {c.name} founded?"))
    return q, _year(c.founded_year), _hop(c, "history", "founded", str(c.founded_year))


def _company_founder(c: Company, rng) -> Fact:
    return f"Who founded {c.name}?", c.founder.aliases, _hop(c, "history", "founded", c.founder.name)


def _headquarters(c: Company, rng) -> Fact:
    q = rng.choice((f"Where is {c.name} headquartered?", f"In which city does {c.name} have its headquarters?"))
    return q, c.headquarters.aliases, _hop(c, "overview", "headquarters", c.headquarters.name)


def _creator(w: Work, rng) -> Fact:
    q = f"Who {_CREATOR_VERB[w.kind]} {w.name}?"
    return q, w.creator.aliases, _hop(w, "overview", w.verb, w.creator.name)


def _work_year(w: Work, rng) -> Fact:
    verb = release_verb(w)
    q = f"In what year was {w.name} first {verb}?" if w.kind == "opera" else f"In what year was {w.name} {verb}?"
    return q, _year(w.year), _hop(w, "overview", verb, str(w.year))


def _located(u: University, rng) -> Fact:
    return f"In which city is {u.name} located?", u.city.aliases, _hop(u, "overview", "located", u.city.name)


def _university_city(u: University, rng) -> Fact | None:
    if u.city.name in u.name:
        return None  # "the University of Tarsen" names its city: not worth a question, nor a hop
    return _located(u, rng)


def _university_year(u: University, rng) -> Fact:
    return (
        f"In what year was {u.name} founded?",
        _year(u.founded_year),
        _hop(u, "overview", "founded", str(u.founded_year)),
    )


def _university_founder(u: University, rng) -> Fact | None:
    if u.founder is None:
        return None
    return f"Who founded {u.name}?", u.founder.aliases, _hop(u, "overview", "founded", u.founder.name)


def _city_country(c: City, rng) -> Fact:
    q = rng.choice((f"In which country is {c.name}?", f"{c.name} is a city in which country?"))
    return q, c.country.aliases, _hop(c, "overview", "city", c.country.name)


def _city_year(c: City, rng) -> Fact:
    return (
        f"In what year was {c.name} founded?",
        _year(c.founded_year),
        _hop(c, "history", "founded", str(c.founded_year)),
    )


def _capital(k: Country, rng) -> Fact:
    return f"What is the capital of {k.name}?", k.capital.aliases, _hop(k, "overview", "capital", k.capital.name)


def _independence(k: Country, rng) -> Fact:
    q = f"In what year did {k.name} become independent?"
    return q, _year(k.independence_year), _hop(k, "history", "independent", str(k.independence_year))


def _height(m: Landmark, rng) -> Fact | None:
    if m.kind != "mountain":
        return None
    h = m.height_m
    aliases = (f"{h:,} metres", f"{h} m", str(h))
    return f"How high is {m.name}?", aliases, _hop(m, "overview", "height", f"{h:,} metres")


def _climber(m: Landmark, rng) -> Fact | None:
    if m.climber is None:
        return None
    return (
        f"Who made the first ascent of {m.name}?",
        m.climber.aliases,
        _hop(m, "exploration", "ascent", m.climber.name),
    )


def _river_country(r: Landmark, rng) -> Fact | None:
    if r.kind != "river" or len(r.countries) != 1:
        return None
    country = r.countries[0]
    return f"Through which country does the {r.name} flow?", country.aliases, _hop(r, "overview", "flows", country.name)


def _river_length(r: Landmark, rng) -> Fact | None:
    if r.kind != "river":
        return None
    n = r.length_km
    aliases = (f"{n:,} kilometres", f"{n} km", str(n))
    return f"How long is the {r.name}?", aliases, _hop(r, "overview", "long", f"{n:,} kilometres")


SINGLE: dict[type, tuple[Callable[..., Fact | None], ...]] = {
    Person: (_born_city, _born_year, _died_year, _university, _spouse, _mentor),
    Company: (_company_year, _company_founder, _headquarters),
    Work: (_creator, _work_year),
    University: (_university_city, _university_year, _university_founder),
    City: (_city_country, _city_year),
    Country: (_capital, _independence),
    Landmark: (_height, _climber, _river_country, _river_length),
}


def single(subject: Entity, rng: random.Random) -> list[Draft]:
    drafts = []
    for fact in SINGLE[type(subject)]:
        made = fact(subject, rng)
        if made is not None:
            question, answers, hop = made
            drafts.append(Draft("single", question, answers, (hop,)))
    return drafts


# ---- bridge: the first hop finds an entity, the second asks about it ------------------------------


def _attended(p: Person) -> University | None:
    return p.university


# (wording, the fact that finds the bridge entity, the bridge entity, the fact asked about it)
Bridge = tuple[str, Callable[..., Fact | None], Callable[[Entity], "Entity | None"], Callable[..., Fact | None]]
BRIDGES: dict[type, tuple[Bridge, ...]] = {
    Person: (
        ("In which city was the mentor of {name} born?", _mentor, lambda p: p.mentor, _born_city),
        ("In what year was the spouse of {name} born?", _spouse, lambda p: p.spouse, _born_year),
        ("In which city is the university where {name} studied?", _university, _attended, _university_city),
        ("Who founded the university where {name} studied?", _university, _attended, _university_founder),
    ),
    Company: (
        ("In which city was the founder of {name} born?", _company_founder, lambda c: c.founder, _born_city),
        ("In what year was the founder of {name} born?", _company_founder, lambda c: c.founder, _born_year),
        ("In which country is {name} headquartered?", _headquarters, lambda c: c.headquarters, _city_country),
    ),
    Work: (
        ("In what year was the {noun} of {name} born?", _creator, lambda w: w.creator, _born_year),
        ("Where was the {noun} of {name} born?", _creator, lambda w: w.creator, _born_city),
    ),
    University: (
        ("In which country is {name}?", _located, lambda u: u.city, _city_country),
        ("Where was the founder of {name} born?", _university_founder, lambda u: u.founder, _born_city),
    ),
    # For a capital the answer is the city itself: gives_away() rejects that draft.
    City: (
        ("What is the capital of the country where {name} is located?", _city_country, lambda c: c.country, _capital),
    ),
    Landmark: (
        ("In which city was the first person to climb {name} born?", _climber, lambda m: m.climber, _born_city),
    ),
}  # fmt: skip


def bridge(subject: Entity, rng: random.Random) -> list[Draft]:
    drafts = []
    for wording, find, link, ask in BRIDGES.get(type(subject), ()):
        first, target = find(subject, rng), link(subject)
        second = ask(target, rng) if first is not None and target is not None else None
        if second is not None:
            question = wording.format(name=subject.name, noun=_CREATOR_NOUN.get(getattr(subject, "kind", ""), ""))
            drafts.append(Draft("bridge", question, second[1], (first[2], second[2])))
    return drafts


# ---- comparison: two lookups of the same fact, the answer is one of the two names -----------------

Compare = tuple[Callable[[Entity, random.Random], Fact | None], Callable[[Entity], int | None], str]
COMPARE: dict[type, tuple[Compare, ...]] = {
    Person: ((_born_year, lambda p: p.born_year, "Who was born first, {a} or {b}?"),),
    Company: ((_company_year, lambda c: c.founded_year, "Which was founded earlier, {a} or {b}?"),),
    Work: ((_work_year, lambda w: w.year, "Which {kind} came out first, {a} or {b}?"),),
    University: ((_university_year, lambda u: u.founded_year, "Which university is older, {a} or {b}?"),),
    City: ((_city_year, lambda c: c.founded_year, "Which city was founded earlier, {a} or {b}?"),),
    Landmark: (
        (_height, lambda m: -m.height_m if m.kind == "mountain" else None, "Which mountain is higher, {a} or {b}?"),
    ),
}


def comparison(a: Entity, b: Entity, rng: random.Random) -> list[Draft]:
    """The first of (a, b) by the compared value wins ("born first", "higher": stored negated)."""
    drafts = []
    for fact, value, wording in COMPARE.get(type(a), ()):
        va, vb = value(a), value(b)
        if va is None or vb is None or va == vb or getattr(a, "kind", None) != getattr(b, "kind", None):
            continue
        winner = a if va < vb else b
        question = wording.format(a=a.name, b=b.name, kind=getattr(a, "kind", ""))
        drafts.append(Draft("comparison", question, winner.aliases, (fact(a, rng)[2], fact(b, rng)[2])))
    return drafts


def to_item(draft: Draft, item_id: str) -> QAItem:
    gold = tuple(dict.fromkeys(hop.doc_id for hop in draft.hops))
    # Aliases that normalise alike ("3,419 m" and "3419 m") score alike: keep the first spelling.
    by_norm = {}
    for alias in draft.answers:
        by_norm.setdefault(normalize_answer(alias), alias)
    return QAItem(item_id, draft.question, tuple(by_norm.values()), SOURCE, draft.kind, gold, draft.hops)
