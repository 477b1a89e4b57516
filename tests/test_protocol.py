import pytest

from mem1_gym import protocol
from mem1_gym.protocol import ActionType, normalize_answer, parse_action, split_answers
from mem1_gym.retrieval.base import Doc


@pytest.mark.parametrize(
    "text, kind, content, think",
    [
        ("<think>s</think>\n<search> founder of X </search>", ActionType.SEARCH, "founder of X", "s"),
        ("<think>s</think><answer>a; b</answer>", ActionType.ANSWER, "a; b", "s"),
        ("<search>q</search>", ActionType.SEARCH, "q", None),  # bare block, no think
        ("search[founder of X]", ActionType.SEARCH, "founder of X", None),
        ("  answer[Paris; 1999] ", ActionType.ANSWER, "Paris; 1999", None),
        # the first complete block wins; what follows it (a hallucinated observation) is ignored
        ("<think>t</think><search>a</search><information>x</information><answer>b</answer>", ActionType.SEARCH, "a", "t"),
        ("<answer>x<search>y</search>", ActionType.SEARCH, "y", None),  # unclosed <answer> is not a block
        ("<answer></answer>", ActionType.ANSWER, "", None),  # an empty answer is a (wrong) answer
    ],
)
def test_parse_valid(text, kind, content, think):
    parsed = parse_action(text)
    assert (parsed.type, parsed.content, parsed.think, parsed.error) == (kind, content, think, "")


@pytest.mark.parametrize(
    "text, error",
    [
        ("", "empty action"),
        ("   ", "empty action"),
        ("<search>unclosed", "unclosed <search> tag"),
        ("<answer>unclosed", "unclosed <answer> tag"),
        ("just prose", "no <search>...</search> or <answer>...</answer> block"),
        ("<search>  </search>", "empty search query"),
        (b"bytes".decode() + "\x00\xff", "no <search>...</search> or <answer>...</answer> block"),
    ],
)
def test_parse_invalid(text, error):
    parsed = parse_action(text)
    assert parsed.type is ActionType.INVALID and not parsed.valid and parsed.error == error


def test_parse_non_string_is_invalid_not_exception():
    assert parse_action(None).type is ActionType.INVALID
    assert parse_action(b"<search>x</search>").error.startswith("action must be a str")


def test_consumed_chars_end_at_the_closing_tag():
    text = "<think>t</think><search>q</search> trailing junk"
    assert text[: parse_action(text).end] == "<think>t</think><search>q</search>"


def test_query_is_capped():
    parsed = parse_action("<search>" + "x" * 10_000 + "</search>")
    assert len(parsed.content) == protocol.MAX_QUERY_CHARS


def test_parser_is_linear_on_many_unclosed_tags():
    # 200k unclosed tags would take minutes with a backtracking regex.
    assert parse_action("<search><think>" * 200_000).type is ActionType.INVALID


# Issue 19, 1e: a tag written while thinking is a thought, never the action, in all three families.
THOUGHT_TAGS = [
    # (turn, QA action, web action, shop action); None: no action (invalid)
    ("<think>I could <search>x</search> next</think><answer>y</answer>", ("answer", "y"), ("answer", "y"), None),
    ("<think>not <answer>bad</answer> yet</think><search>real</search>", ("search", "real"), ("search", "real"), None),
    ("<think>a</think><think>b <search>no</search></think><search>yes</search>", ("search", "yes"), ("search", "yes"), None),
    ("<think>still thinking <search>x</search>", None, None, None),  # unclosed: everything after is thought
    ("<think>try <open>http://a.test/</open></think><open>http://b.test/</open>", None, ("open", "http://b.test/"), None),
    ("<think>x <answer>click[buy now]</answer></think><summary>s</summary><answer>search[shoes]</answer>",
     ("answer", "search[shoes]"), ("answer", "search[shoes]"), ("search", "shoes")),
]


@pytest.mark.parametrize("text, qa, web, shop", THOUGHT_TAGS)
def test_tags_inside_think_are_never_the_action(text, qa, web, shop):
    for parse, expected, content in ((parse_action, qa, "content"), (protocol.parse_web_action, web, "content"),
                                     (protocol.parse_shop_action, shop, "argument")):
        parsed = parse(text)
        got = (parsed.type.name.lower(), getattr(parsed, content)) if parsed.valid else None
        assert got == expected, (parse.__name__, parsed)
        if expected is None and protocol.unclosed_think(text):
            assert parsed.error == protocol.UNCLOSED_THINK_ERROR


def test_think_containing_tags_is_the_internal_state():
    parsed = parse_action("<think>plan: <search>x</search> then answer</think>\n<answer>y</answer>")
    assert parsed.think == "plan: <search>x</search> then answer"


def test_think_skipping_is_linear_on_many_think_blocks():
    parsed = parse_action("<think>a <search>b</search></think>" * 20_000 + "<search>q</search>")
    assert (parsed.type, parsed.content) == (ActionType.SEARCH, "q")


def test_split_answers():
    assert split_answers(" a ;b;  c d ") == ["a", "b", "c d"]
    assert split_answers("") == [""]
    assert split_answers("only") == ["only"]


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("The Beatles", "beatles"),
        ("  An  apple, a day! ", "apple day"),
        ("U.S.", "us"),
        ("Röntgen", "röntgen"),
        ("Ro\u0308ntgen", "röntgen"),  # decomposed umlaut -> NFKC composes it
        ("12\u00a0May\u202f1990", "12 may 1990"),  # no-break spaces inside a date
        ("“Theatre”—Hall", "theatrehall"),  # Unicode quotes and dashes are punctuation
        ("ＡＢＣ １２", "abc 12"),  # full-width forms
        ("", ""),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_hint_wording():
    assert protocol.turns_left_hint(3) == "[HINT]You have 3 turns left.[/HINT]"
    assert "must answer" in protocol.turns_left_hint(1)


def test_render_docs_matches_search_r1():
    docs = [Doc.from_contents("7", '"Evan Morris"\nEvan Morris was a lobbyist.'), Doc("8", '"B"', "text b")]
    assert protocol.render_docs(docs) == (
        'Doc 1(Title: "Evan Morris") Evan Morris was a lobbyist.\nDoc 2(Title: "B") text b'
    )


def test_information_block_and_prompt():
    block = protocol.information_block("[HINT]h[/HINT]", "Doc 1(Title: x) y\n")
    assert block == "\n\n<information>[HINT]h[/HINT]\n\nDoc 1(Title: x) y\n</information>\n\n"
    prompt = protocol.qa_prompt(["Who founded X", "When?"], max_turns=6)
    assert "Q1: Who founded X?\nQ2: When?" in prompt and "6 turns in total" in prompt


def test_format_turn_roundtrips_through_the_parser():
    turn = protocol.format_turn("state", ActionType.ANSWER, protocol.join_answers(["a", "b"]))
    parsed = parse_action(turn)
    assert parsed.type is ActionType.ANSWER and split_answers(parsed.content) == ["a", "b"] and parsed.think == "state"
