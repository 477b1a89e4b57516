"""Wikipedia-style passages for the synthetic encyclopedia.

Every article has a few sections (overview, history, ...), one passage each, of 60–120 words:
some *core* sentences state the facts that questions ask about, then *filler* sentences with
invented colour (numbers, events, names from the same world) pad it to a random length, as real
articles do. Which fact lives in which section is fixed (``SECTIONS``), so a question's hop knows
its supporting passage.

Hop queries (mem1_gym.data.synthetic_questions) pair an entity name with one keyword that appears
in the core sentence of the right section only: "born" (person overview), "founded" (history of
an organisation or city), "headquarters", "married", "mentor", "studied", "capital", "ascent",
"height", "flows", the creation verbs. Fillers and other sections avoid those keywords, which is
what makes the hop queries reach their passage with BM25 (measured in tests/data).
"""

from __future__ import annotations

import random
from typing import Callable, Iterator

from mem1_gym.data.synthetic_entities import (
    LATEST_YEAR,
    City,
    Company,
    Country,
    Entities,
    Entity,
    Landmark,
    Person,
    University,
    Work,
)

MIN_WORDS, MAX_WORDS = 60, 120
# Section order per article; also the order of its passages in the corpus.
SECTIONS = {
    Country: ("overview", "history", "geography"),
    City: ("overview", "history"),
    Landmark: ("overview", "exploration"),
    University: ("overview", "academics"),
    Person: ("overview", "career", "personal life"),
    Company: ("overview", "history", "operations"),
    Work: ("overview", "reception"),
}
_MONTHS = "January February March April May June July August September October November December".split()
_RELEASE = {"film": "released", "novel": "published", "opera": "premiered"}


def release_verb(work: Work) -> str:
    return _RELEASE[work.kind]


def iter_passages(world: Entities, rng: random.Random) -> Iterator[tuple[Entity, str, str]]:
    """``(entity, section, text)`` for every passage, in corpus order."""
    # Cross-references (a person's works, a university's alumni) make articles mention each other,
    # as in Wikipedia; built once, since scanning per article would be quadratic at 100k passages.
    notable: dict[str, list[str]] = {}
    for made in (*world.works, *world.companies):
        maker = made.creator if isinstance(made, Work) else made.founder
        notable.setdefault(maker.key, []).append(made.name)
    for person in world.persons:
        if person.university is not None:
            notable.setdefault(person.university.key, []).append(person.name)
    writers: dict[type, Callable[..., dict[str, tuple[list[str], list[str]]]]] = {
        Country: _country, City: _city, Landmark: _landmark, University: _university,
        Person: _person, Company: _company, Work: _work,
    }  # fmt: skip
    for entity in world.all():
        sections = writers[type(entity)](rng, entity, world, notable)
        for section in SECTIONS[type(entity)]:
            core, fillers = sections[section]
            yield entity, section, _compose(rng, core, fillers)


def title_line(entity: Entity) -> str:
    return f'"{entity.name}"'


def _compose(rng: random.Random, core: list[str], fillers: list[str]) -> str:
    """Core sentences first, then shuffled fillers until a random target length in [60, 120] words."""
    target = rng.randint(MIN_WORDS + 8, MAX_WORDS - 12)
    sentences, words = list(core), sum(len(s.split()) for s in core)
    pool = list(fillers)
    rng.shuffle(pool)
    for sentence in pool:
        extra = len(sentence.split())
        if words >= target or words + extra > MAX_WORDS:
            continue
        sentences.append(sentence)
        words += extra
    return " ".join(sentences)


def _a(word: str) -> str:
    """The indefinite article for ``word`` ("an Iheilian banker", "an 1843 novel", "a 1921 film")."""
    vowel_sound = word[0].lower() in "aeiou" or word.startswith(("18", "11", "8"))
    return f"an {word}" if vowel_sound else f"a {word}"


def _later(rng: random.Random, start: int, low: int, high: int) -> int:
    """A year ``low``–``high`` years after ``start``, never past the world's present."""
    return min(start + rng.randint(low, high), LATEST_YEAR)


def _day(rng: random.Random) -> str:
    return f"{rng.randint(1, 28)} {rng.choice(_MONTHS)}"


def _pronouns(person: Person) -> tuple[str, str]:
    return ("He", "His") if person.pronoun == "he" else ("She", "Her")


def _person(rng, p: Person, world: Entities, notable: dict[str, list[str]]) -> dict:
    he, his = _pronouns(p)
    him, his_ = ("him", "his") if p.pronoun == "he" else ("her", "her")
    city, country = p.born_city, p.born_city.country
    other, third = rng.choice(world.cities).name, rng.choice(world.cities).name
    life = f"{p.born_year}–{p.died_year}" if p.died_year else f"born {_day(rng)} {p.born_year}"
    tense = "was" if p.died_year else "is"
    a, b = p.born_year + rng.randint(18, 30), p.born_year + rng.randint(31, 45)
    who, where = f"{_a(country.demonym)} {p.occupation}", f"{city.name}, {country.name}"
    overview = [
        rng.choice((
            f"{p.name} ({life}) {tense} {who}. {he} was born in {where}, in {p.born_year}.",
            f"{p.name} {tense} {who}, born on {_day(rng)} {p.born_year} in {where}.",
            f"{p.name} (born {p.born_year} in {city.name}) {tense} {_a(p.occupation)} from {country.name}.",
        ))
    ]  # fmt: skip
    # Sections open with the full name, as wiki passages repeat the title: a college or company
    # named after the person must not outrank the person's own passage for "<name> studied".
    career = [f"{p.name} trained as {_a(p.occupation)} in {other}."]
    if p.university:
        # The university's city is left out on purpose: "in which city is the university where X
        # studied" must need the university's own article (a bridge question, not a single hop).
        career = [f"{p.name} studied at {p.university.name} from {p.born_year + 18}."]
    if p.mentor:
        career.append(f"{his} mentor in those years was the {p.mentor.occupation} {p.mentor.name}.")
    if notable.get(p.key):
        career.append(f"{p.surname} is best known for {' and '.join(notable[p.key][:2])}.")
    personal = []
    if p.spouse:
        personal.append(
            f"In {_later(rng, max(p.born_year, p.spouse.born_year), 20, 32)} {p.surname} married "
            f"{p.spouse.name}, {_a(p.spouse.occupation)}."
        )
    if p.died_year:
        personal.append(
            f"{p.name} died in {p.died_city.name} in {p.died_year}, at the age of {p.died_year - p.born_year}."
        )
    else:
        personal.append(f"{p.name} lives and works in {p.born_city.name}.")
    overview_fill = [
        f"{p.surname} is regarded as one of the most original {p.occupation}s of {his_} generation.",
        f"{his} family had lived in the hill country around {city.name} for several generations.",
        f"{his} early years were spent in {other}, where an uncle taught {him} to read and draw.",
        f"{he} spoke three languages and travelled widely in {country.name} and abroad.",
        f"{his} father kept a bookshop and {his_} mother taught music at a local school.",
        f"Much of what is known about {his_} youth comes from letters kept by a sister in {third}.",
        f"Contemporaries described {him} as patient, stubborn and unusually precise.",
        f"{his} work is studied in schools across {country.name}.",
    ]
    career_fill = [
        f"In {a} {p.surname} moved to {other} and opened a small workshop near the harbour.",
        f"{his} reputation grew quickly after a public exhibition of {his_} work in {b}.",
        f"By {b} {he.lower()} had become a member of the {country.demonym} Society of Arts and Sciences.",
        f"Critics praised the precision and patience of {his_} methods, though some found them old-fashioned.",
        f"{he} gave public lectures in {city.name} and {third} for more than a decade.",
        f"A long quarrel with a rival in {third} made {him} famous well beyond {country.name}.",
        f"{he} kept detailed notebooks, now an important source for historians of the period.",
        f"Several younger colleagues later described the years in {other} as the most productive of {his_} life.",
    ]
    personal_fill = [
        f"{he} was awarded the Order of {country.name} in {_later(rng, b, 1, 10)}.",
        f"A street in {city.name} bears {his_} name, and a bronze bust stands in its square.",
        f"{his} letters and notebooks are kept in the archive of {other}.",
        f"{p.surname} spent {his_} later years writing a memoir that remained unfinished.",
        f"{his} house in {third} was later turned into a small museum.",
        f"{he} was a keen gardener and a collector of old maps.",
        f"A biography by a former student appeared {rng.randint(3, 40)} years later.",
    ]
    return {
        "overview": (overview, overview_fill),
        "career": (career, career_fill),
        "personal life": (personal, personal_fill),
    }


def _company(rng, c: Company, world: Entities, notable: dict[str, list[str]]) -> dict:
    hq, f = c.headquarters, c.founder
    noun = c.industry.lower()
    other, third = rng.choice(world.cities).name, rng.choice(world.cities).name
    year = _later(rng, c.founded_year, 5, 60)
    overview = [
        f"{c.name} is {_a(noun)} company.",
        f"It has its headquarters in {hq.name} and employs about {c.employees:,} people.",
    ]
    history = [f"{c.name} was founded in {c.founded_year} by {f.name}, {_a(f.occupation)}."]
    # No sentence names the headquarters' country: "in which country is X headquartered" must
    # need the city's article (a bridge question), not any passage of X itself.
    operations = [f"{c.short_name} operates {rng.randint(2, 40)} sites, most of them near {hq.name}."]
    overview_fill = [
        f"Its largest market is the region around {other}.",
        f"Shares of {c.short_name} have been traded publicly since {year}.",
        "The firm is one of the oldest private employers in its district.",
        "Its logo, a ship's wheel inside a circle, has barely changed in a century.",
        "The company is owned partly by a charitable trust and partly by its staff.",
        f"Annual revenue is estimated at {rng.randint(20, 900)} million marks.",
        "It is a member of the national chamber of commerce.",
    ]
    history_fill = [
        f"In {year} the firm opened a second office in {other}.",
        f"The business grew rapidly in the {(year // 10) * 10}s, when demand for its goods rose across the region.",
        f"A fire destroyed its first premises in {_later(rng, c.founded_year, 1, 15)}, and the business moved.",
        f"After {f.surname} retired, the business was run by a board of partners.",
        f"It survived a severe financial crisis in {_later(rng, year, 1, 30)} with the help of a loan from {third}.",
        "Its first catalogue listed fewer than twenty products.",
        "Early records of the firm were lost during a flood.",
    ]
    operations_fill = [
        f"Its main customers are merchants in {other} and {third}.",
        f"The company publishes an annual report on its {noun} business.",
        "About a third of its revenue comes from exports.",
        f"It sponsors a music festival in {hq.name} every summer.",
        f"In {_later(rng, year, 1, 30)} it acquired a smaller rival from {other}.",
        f"A training school for apprentices opened in {_later(rng, year, 5, 40)}.",
        "Its warehouses near the railway station are listed buildings.",
        "The workforce is represented by two unions.",
    ]
    return {
        "overview": (overview, overview_fill),
        "history": (history, history_fill),
        "operations": (operations, operations_fill),
    }


def _work(rng, w: Work, world: Entities, notable: dict[str, list[str]]) -> dict:
    c = w.creator
    country = c.born_city.country
    venue, other = rng.choice(world.cities).name, rng.choice(world.cities).name
    unit = {"film": "minutes", "novel": "pages", "opera": "minutes"}[w.kind]
    overview = [
        f"{w.name} is {_a(str(w.year))} {country.demonym} {w.kind} {w.verb} by {c.name}.",
        f"It was first {release_verb(w)} in {venue} in {w.year}.",
    ]
    reception = [f"{w.name} received mixed reviews on its first appearance."]
    overview_fill = [
        f"The story follows a family in {other} over three generations.",
        f"It runs to about {rng.randint(90, 400)} {unit}.",
        f"{w.name} was among the most discussed works of its decade in {country.name}.",
        "Its central character is a ferry pilot who loses a fortune at cards.",
        f"The title refers to a landmark on the edge of {other}.",
        "Several scenes take place during a harsh winter.",
        f"It was the first {w.kind} of its kind in {country.demonym}.",
    ]
    reception_fill = [
        f"Later critics ranked it among the finest {w.kind}s of its period.",
        f"A restored edition appeared in {_later(rng, w.year, 20, 60)}.",
        f"It won the {venue} Prize the following year.",
        f"Scholars have compared its structure to older works from {country.name}.",
        f"It has been translated or adapted in {rng.randint(3, 30)} countries.",
        f"A newspaper in {other} called it a brave failure.",
        "Audiences were divided over its long and quiet ending.",
        f"It is still taught in courses on {country.demonym} culture.",
    ]
    return {"overview": (overview, overview_fill), "reception": (reception, reception_fill)}


def _university(rng, u: University, world: Entities, notable: dict[str, list[str]]) -> dict:
    city = u.city
    founding = f"It was founded in {u.founded_year}."
    if u.founder:
        founding = f"It was founded in {u.founded_year} by {u.founder.name}, {_a(u.founder.occupation)}."
    overview = [f"{u.name} is a university located in {city.name}.", founding]
    academics = [f"{u.name} is best known for its schools of law, medicine and engineering."]
    if notable.get(u.key):
        academics.append(f"Its alumni include {' and '.join(notable[u.key][:2])}.")
    overview_fill = [
        f"It has about {rng.randint(2, 40) * 500:,} students in {rng.randint(3, 12)} faculties.",
        "Its main building stands near the old market square.",
        f"The library holds more than {rng.randint(1, 90) * 10_000:,} volumes and a collection of early maps.",
        "Its coat of arms shows an open book and a key.",
        f"Tuition has been free for its students since {_later(rng, u.founded_year, 5, 90)}.",
        "The campus also includes a botanical garden and a small observatory.",
    ]
    academics_fill = [
        "Teaching is mostly in the local language, with some courses in other languages.",
        f"Its observatory was built in {_later(rng, u.founded_year, 10, 120)}.",
        "Students elect a rector every four years.",
        f"The university press prints about {rng.randint(20, 200)} titles a year.",
        f"It keeps exchange programmes with colleges in {rng.choice(world.cities).name}.",
        "Research in chemistry and astronomy has long been a strength.",
        f"Its medical school runs a teaching hospital with {rng.randint(2, 12) * 100} beds.",
    ]
    return {"overview": (overview, overview_fill), "academics": (academics, academics_fill)}


def _city(rng, c: City, world: Entities, notable: dict[str, list[str]]) -> dict:
    country = c.country
    role = "the capital and largest city of" if country.capital is c else "a city in"
    overview = [f"{c.name} is {role} {country.name}, with a population of about {c.population:,}."]
    if c.river:
        overview.append(f"It lies on the banks of the {c.river.name}.")
    history = [f"{c.name} was founded in {c.founded_year} as a trading post."]
    overview_fill = [
        "The old town is known for its covered markets and narrow streets.",
        f"The local dialect differs noticeably from standard {country.demonym}.",
        f"A railway line connects it with {rng.choice(world.cities).name}.",
        "Its climate is mild, with wet winters and warm summers.",
        "The main industries are food processing, printing and tourism.",
        "A ferry crosses to the nearby islands several times a day.",
        "The town hall stands on a square lined with lime trees.",
    ]
    history_fill = [
        f"Its walls were extended in {_later(rng, c.founded_year, 50, 300)}.",
        f"A great fire in {_later(rng, c.founded_year, 100, 400)} destroyed much of the centre.",
        f"The first stone bridge in the town opened in {_later(rng, c.founded_year, 200, 600)}.",
        "During the nineteenth century the town grew around its textile mills.",
        "Its cathedral is the oldest building still standing.",
        "The town was granted a market charter early in its history.",
        f"Plague reduced its population by half in {_later(rng, c.founded_year, 20, 200)}.",
    ]
    return {"overview": (overview, overview_fill), "history": (history, history_fill)}


def _country(rng, c: Country, world: Entities, notable: dict[str, list[str]]) -> dict:
    overview = [
        f"{c.name}, officially the {c.long_name}, is a country with a population of about {c.population:,}.",
        f"Its capital is {c.capital.name}. The official language is {c.demonym}.",
    ]
    history = [f"{c.name} became independent in {c.independence_year}."]
    places = [landmark.name for landmark in world.landmarks if c in landmark.countries][:3] or ["several high plateaus"]
    geography = [f"The landscape of {c.name} includes {', '.join(places)}."]
    overview_fill = [
        f"The currency is the {c.demonym} mark.",
        "Most of the population lives in the fertile lowlands.",
        "The national flag shows a gold star on a blue field.",
        "It is a member of several regional trade unions and of a customs union with its neighbours.",
        "Agriculture, shipping and mining are the main parts of its economy.",
        "Literacy has been almost universal since the early twentieth century.",
    ]
    history_fill = [
        f"Its first constitution was adopted in {_later(rng, c.independence_year, 1, 40)}.",
        f"A long civil war ended in {_later(rng, c.independence_year, 41, 120)}.",
        "The monarchy was reformed several times during the following centuries.",
        f"Its borders were last redrawn by treaty in {rng.randint(1800, 1990)}.",
        "Historians divide its past into three periods.",
        f"Women gained the right to vote in {rng.randint(1890, 1970)}.",
        "Its oldest surviving law code dates from the twelfth century.",
        "Trade with the neighbouring states brought wealth to its ports.",
        "The old royal palace now houses the national museum.",
    ]
    geography_fill = [
        "About a fifth of the land is forest.",
        "The highest rainfall is recorded in the western hills.",
        f"The coastline is about {rng.randint(50, 900)} kilometres long.",
        "Winters in the mountains are long and snowy.",
        "Farmland covers most of the central valleys.",
        "Several large lakes lie in the north.",
        "Earthquakes are rare but not unknown in the south.",
        "Its highest point is covered by snow for most of the year.",
        "Much of the eastern border follows a chain of low hills.",
    ]
    return {
        "overview": (overview, overview_fill),
        "history": (history, history_fill),
        "geography": (geography, geography_fill),
    }


def _landmark(rng, lm: Landmark, world: Entities, notable: dict[str, list[str]]) -> dict:
    names = " and ".join(c.name for c in lm.countries)
    if lm.kind == "river":
        overview = [
            f"The {lm.name} is a river that flows through {names}.",
            f"It is about {lm.length_km:,} kilometres long.",
        ]
        exploration = [f"The {lm.name} was first mapped along its whole length in {rng.randint(1700, 1950)}."]
    else:
        overview = [f"{lm.name} is a mountain in {names}, with a height of {lm.height_m:,} metres."]
        exploration = [f"{lm.name} has never been climbed by its steepest face."]
        if lm.climber:
            exploration = [
                f"The first ascent of {lm.name} was made in {lm.ascent_year} by {lm.climber.name}, "
                f"{_a(lm.climber.occupation)}."
            ]
    overview_fill = [
        "Its name comes from an old word for stone.",
        "The area is protected as a national park.",
        "It appears on the coat of arms of a nearby town.",
        "Rare birds nest in the reed beds and on the rocky slopes nearby.",
        "Shepherds have used the surrounding pastures for centuries.",
        "Local legends tell of a giant who lived there.",
    ]
    exploration_fill = [
        f"Surveyors returned in {rng.randint(1850, 1990)} with better instruments.",
        f"Travellers from {rng.choice(world.cities).name} described it in their journals.",
        "Several expeditions turned back because of bad weather.",
        f"A shelter for walkers was built in {rng.randint(1890, 1995)}.",
        "Guides from the surrounding villages still lead visitors there.",
        "Early maps placed it many kilometres from its true position.",
    ]
    return {"overview": (overview, overview_fill), "exploration": (exploration, exploration_fill)}
