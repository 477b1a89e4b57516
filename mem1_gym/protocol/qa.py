"""The QA protocol: stop strings, the QA prompt, the turns-left hint, the QA grammar and
:data:`QA_PROTOCOL` (tags and the one parser live in :mod:`mem1_gym.protocol.base`), answer normalisation.

Every other part of mem1-gym (envs, the oracle, the agent, the evaluation) imports these names.
The original MEM1 code had three divergent copies of this logic (different hint wording in training
and inference, opposite search/answer precedence, three definitions of EM; reference/mem1.md §8, R1),
so nothing outside this module may re-implement a tag, a template or a normaliser.

A QA turn is::

    <think>internal state: everything worth remembering</think>
    <search>one keyword query</search>          -- or --          <answer>a1; a2; ...</answer>

and the environment answers a search with::

    \\n\\n<information>[HINT]You have 3 turns left.[/HINT]\\n\\nDoc 1(Title: "X") ...\\n</information>\\n\\n
"""

from __future__ import annotations

import enum
import re
import string
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence

from mem1_gym.protocol.base import (
    ANSWER,
    INFORMATION,
    MAX_QUERY_CHARS,
    SEARCH,
    THINK,
    EnvProtocol,
    TurnGrammar,
    close_tag,
    first_action_block,  # noqa: F401  (its home before base.py; the package re-exports it too)
    open_tag,
)

# --------------------------------------------------------------------------------------------
# Stop strings
# --------------------------------------------------------------------------------------------

# Generation must stop at the end of an action block, in training and in evaluation alike
# (the original sampled to EOS in training only: reference/mem1.md §8, B6).
QA_STOP_STRINGS: tuple[str, ...] = (close_tag(SEARCH), close_tag(ANSWER))
QA_FINAL_TURN_STOP_STRINGS: tuple[str, ...] = (close_tag(ANSWER),)
ANSWER_SEPARATOR = ";"

# --------------------------------------------------------------------------------------------
# Prompt and hints
# --------------------------------------------------------------------------------------------

QA_INSTRUCTIONS = """\
You will answer several questions. You can search a knowledge base as often as your turn budget \
allows, but you do not keep a transcript: at every turn you see only these instructions, your \
previous turn and the latest search results.

Every turn, do two things, in this order:
1. Inside <think> </think>, rewrite your memory: the answers found so far, what is still missing and \
anything from the new search results that you will need later. Whatever you leave out of <think> \
is forgotten after this turn.
2. Then either search with one keyword query for one question inside <search> </search>, or, once \
every question is answered (or when you are told to answer now), give all answers in question order, \
separated by semicolons, inside <answer> </answer>, for example <answer> answer1; answer2 </answer>. \
Answers are short: a name, a date, a number, a place; no explanations.

Search results arrive inside <information> </information> together with the number of turns you \
have left. Never write <information> yourself, and never search for two questions at once.
"""


def format_question(question: str) -> str:
    """Strip a question and make it end with a question mark (as the MEM1 and Search-R1 data)."""
    question = question.strip()
    return question if question.endswith("?") else question + "?"


def qa_prompt(questions: Sequence[str], max_turns: int | None = None) -> str:
    """The task prompt of a QA episode with N questions (the first observation).

    It holds no turns-left hint: the prompt is re-read at every turn by a MEM1 context, so a count
    in it would go stale; the current count arrives in every observation instead.
    """
    budget = f"You have {max_turns} turns in total.\n" if max_turns else ""
    if len(questions) == 1:
        header = "Answer the following question:"
    else:
        header = f"Answer the following {len(questions)} questions:"
    lines = [f"Q{i}: {format_question(q)}" for i, q in enumerate(questions, start=1)]
    return QA_INSTRUCTIONS + budget + "\n" + header + "\n" + "\n".join(lines) + "\n"


def turns_left_hint(turns_left: int) -> str:
    """The remaining-turn hint carried by every observation (MEM1 training wording)."""
    if turns_left <= 0:
        return "[HINT]You have no turns left.[/HINT]"
    if turns_left == 1:
        return "[HINT]You have 1 turn left. You must answer the questions in the next turn.[/HINT]"
    return f"[HINT]You have {turns_left} turns left.[/HINT]"


class HasTitleText(Protocol):
    title: str
    text: str


def format_doc(rank: int, title: str, text: str) -> str:
    """One retrieved passage exactly as Search-R1/MEM1 render it (title keeps its quotes)."""
    return f"Doc {rank}(Title: {title}) {text}"


def render_docs(docs: Iterable[HasTitleText]) -> str:
    return "\n".join(format_doc(i, d.title, d.text) for i, d in enumerate(docs, start=1))


def information_block(hint: str, body: str) -> str:
    """The exact text the QA env injects after a turn (the whole observation of a step)."""
    return f"\n\n{open_tag(INFORMATION)}{hint}\n\n{body.strip()}\n{close_tag(INFORMATION)}\n\n"


# --------------------------------------------------------------------------------------------
# MEM1 compatibility: the text the released MEM1 checkpoint was trained on (issue 23)
# --------------------------------------------------------------------------------------------

PROMPT_FORMATS: tuple[str, ...] = ("mem1gym", "mem1")
"""The QA envs' ``prompt_format``: ours (the default), or the prompt and observation text of
MEM1's training rollout (reference/mem1.md §1.2, §1.3), which ``Mem-Lab/Qwen2.5-7B-RL-RAG-Q2-EM-Release``
must read to behave as it was trained."""

MEM1_QUESTIONS_HEADER = "Answer the following questions:"

# Our own wording of the structure of MEM1's multi-objective prompt (its text is not reproduced):
# an exact copy of what the checkpoint read comes from MEM1's parquet, which stores the prompt of
# every row and which the envs show verbatim (Task.prompt). Only the last line's layout is MEM1's.
MEM1_INSTRUCTIONS = """\
You will answer several complex questions by reasoning, summarizing and searching, one step at a time. \
At each step you see the questions, your cumulative summary, your latest search query and its results \
(at the first step, only the questions).

At every step:
1. Reason, then write an updated cumulative summary inside <think> </think>. The summary is your only \
persistent memory: keep everything still needed from the previous <think> and the new <information>.
2. Then either (a) if any question is still unanswered, search for one question with one keyword query \
inside <search> </search>; or (b) if every question is answered, give the final answers in question order, \
separated by semicolons, inside <answer> answer1; answer2; ... </answer>, short and without explanations.

Important: after the questions or an <information> block, always write <think>...</think><search>...</search> \
or <think>...</think><answer>...</answer>. Never search for several questions at once.

"""


def mem1_prompt(questions: Sequence[str]) -> str:
    """MEM1's prompt layout: instructions, then ``Answer the following questions: q1?; q2?`` and a newline."""
    return f"{MEM1_INSTRUCTIONS}{MEM1_QUESTIONS_HEADER} {'; '.join(format_question(q) for q in questions)}\n"


def mem1_turns_left_hint(turns_left: int) -> str:
    """MEM1's training hint: its last-turn wording says "the question", and the last step has none."""
    if turns_left <= 0:
        return ""
    if turns_left == 1:
        return "[HINT]You have 1 turn left. You must answer the question in the next turn.[/HINT]"
    return f"[HINT]You have {turns_left} turns left.[/HINT]"


def mem1_information_block(hint: str, body: str) -> str:
    """MEM1's training observation: as :func:`information_block` without the newline before ``</information>``."""
    return f"\n\n{open_tag(INFORMATION)}{hint}\n\n{body.strip()}{close_tag(INFORMATION)}\n\n"


def observation_text(turns_left: int, body: str, prompt_format: str = "mem1gym") -> str:
    """The whole observation of a search or invalid step, with its hint, in ``prompt_format``."""
    if prompt_format == "mem1":
        return mem1_information_block(mem1_turns_left_hint(turns_left), body)
    return information_block(turns_left_hint(turns_left), body)


INVALID_ACTION_MESSAGE = (
    "Your previous turn had no valid action. End every turn with exactly one action: "
    "<search>one keyword query</search> to search, or <answer>answer1; answer2; ...</answer> "
    "with one answer per question, in order, separated by semicolons."
)
EMPTY_RESULTS_MESSAGE = "No documents matched the query."

# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


class ActionType(enum.IntEnum):
    INVALID = 0
    SEARCH = 1
    ANSWER = 2


@dataclass(frozen=True)
class ParsedAction:
    """What the parser understood of one agent turn."""

    type: ActionType
    content: str  # the query, or the raw answer text; "" when invalid
    think: str | None  # content of the first <think> block before the action, if any
    end: int  # characters of the input consumed (through the action's closing tag)
    error: str  # why the action is invalid; "" when valid

    @property
    def valid(self) -> bool:
        return self.type is not ActionType.INVALID


def check_qa_argument(kind: str, argument: str) -> tuple[str, str]:
    """A search needs a query (capped at ``MAX_QUERY_CHARS``); an empty answer is a (wrong) answer."""
    if kind == SEARCH:
        return (argument[:MAX_QUERY_CHARS], "") if argument else ("", "empty search query")
    return argument, ""


QA_GRAMMAR = TurnGrammar(kinds=(SEARCH, ANSWER), check=check_qa_argument)
QA_PROTOCOL = EnvProtocol(
    family="qa", grammar=QA_GRAMMAR, stop_strings=QA_STOP_STRINGS,
    final_turn_stop_strings=QA_FINAL_TURN_STOP_STRINGS, score_keys=("em", "f1"),
)
"""The protocol of ``MEM1-MultiHopQA-N`` (each env binds it to its split's task ids)."""


def parse_action(text: str) -> ParsedAction:
    """Parse a full model turn or a bare action (:meth:`TurnGrammar.parse` with the QA grammar).

    * A full turn: the first complete ``<search>…</search>`` or ``<answer>…</answer>`` block
      is the action; text after its closing tag is ignored, as generation stops there
      (``QA_STOP_STRINGS``). The first ``<think>`` block before it is returned as the internal state.
    * A bare action: ``search[query]`` or ``answer[a1; a2]`` (the whole string), or an action block
      with no think.
    Never raises, and runs in linear time on any input (a regex with ``.*?`` is quadratic on a
    megabyte of unclosed tags): anything else is ``ActionType.INVALID`` with ``error`` saying why.
    """
    turn = QA_GRAMMAR.parse(text)
    return ParsedAction(ActionType[turn.kind.upper() or "INVALID"], turn.argument, turn.think, turn.end, turn.error)


def split_answers(answer_text: str) -> list[str]:
    """Split an answer block into positional answers (``"a; b"`` -> ``["a", "b"]``)."""
    return [part.strip() for part in answer_text.split(ANSWER_SEPARATOR)]


def format_turn(think: str, action: ActionType, content: str) -> str:
    """Write a well-formed turn (used by the oracle and tests)."""
    tag = SEARCH if action is ActionType.SEARCH else ANSWER
    return f"{open_tag(THINK)}{think}{close_tag(THINK)}\n{open_tag(tag)}{content}{close_tag(tag)}"


def join_answers(answers: Sequence[str]) -> str:
    return f"{ANSWER_SEPARATOR} ".join(answers)


# --------------------------------------------------------------------------------------------
# Answer normalisation (SQuAD style, Unicode-safe)
# --------------------------------------------------------------------------------------------

_ASCII_PUNCT = frozenset(string.punctuation)
_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")


def _is_punct(ch: str) -> bool:
    return ch in _ASCII_PUNCT or unicodedata.category(ch).startswith("P")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation plus Unicode: NFKC, lowercase, drop punctuation and articles, collapse spaces.

    Punctuation is deleted (not replaced by a space), as in SQuAD and Search-R1's training EM, so
    "U.S." == "US". NFKC folds compatibility forms (no-break spaces U+00A0/U+202F become plain spaces, full-width
    digits become ASCII, decomposed ``o`` + combining diaeresis becomes ``ö``); diacritics are
    kept, so "Röntgen" and "Rontgen" are different answers. Punctuation is every ASCII
    punctuation mark and every Unicode ``P*`` character (dashes, curly quotes).
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join("" if _is_punct(ch) else ch for ch in text)
    text = _ARTICLES_RE.sub(" ", text)
    return " ".join(text.split())
