"""The locally trained tokenizer: exact round trips, and the "words" pre-tokenizer that makes a name
the same ids wherever it appears (what a tiny model needs to copy names)."""

from __future__ import annotations

import pytest
from mem1_agent.tiny import TinyConfig, load_tokenizer, oracle_texts, train_tokenizer

TEXT = (
    'Doc 1(Title: "Grovotrin College") Grovotrin College was founded in 1785 by Troterdine Azonds.\n'
    "<think>Q1: [Cikast Bram studied] = Grovotrin College (confirmed); [Grovotrin College founded] next."
    " Q2: pending.</think>\n<search>Grovotrin College founded</search>"
)


@pytest.fixture(scope="module")
def words_tokenizer():
    return train_tokenizer(TinyConfig(vocab_size=1024, tokenizer_passages=500, pretokenizer="words",
                                      oracle_episodes=400))


def _occurrences(tokenizer, text: str, name: str) -> set[tuple[int, ...]]:
    """The id sequences that spell ``name`` at each of its occurrences in ``text``."""
    encoding = tokenizer(text, return_offsets_mapping=True)
    found = set()
    start = text.find(name)
    while start >= 0:
        end = start + len(name)
        found.add(tuple(i for i, (a, b) in zip(encoding["input_ids"], encoding["offset_mapping"])
                        if a >= start and b <= end and b > a))
        start = text.find(name, end)
    return found


def test_words_pretokenizer_round_trips_and_spells_a_name_one_way(words_tokenizer):
    ids = words_tokenizer(TEXT)["input_ids"]
    assert words_tokenizer.decode(ids) == TEXT
    # "Grovotrin" follows '"', a space, '[' and '>' above: one spelling everywhere.
    assert len(_occurrences(words_tokenizer, TEXT, "Grovotrin")) == 1


def test_trailing_space_pretokenizer_round_trips_spells_a_name_one_way_and_has_no_space_token():
    tokenizer = train_tokenizer(TinyConfig(vocab_size=1024, tokenizer_passages=500, pretokenizer="trailing-space"))
    ids = tokenizer(TEXT)["input_ids"]
    assert tokenizer.decode(ids) == TEXT
    assert len(_occurrences(tokenizer, TEXT, "Grovotrin")) == 1
    # the space inside "Grovotrin College" (five times) rides on "Grovotrin": no token is just that space
    offsets = tokenizer(TEXT, return_offsets_mapping=True)["offset_mapping"]
    inside = [a for a, b in offsets if TEXT[a:b] == " " and TEXT[a - 9 : a + 2] == "Grovotrin C"]
    assert TEXT.count("Grovotrin C") == 5 and inside == []
    words_ids = train_tokenizer(TinyConfig(vocab_size=1024, tokenizer_passages=500, pretokenizer="words"))(TEXT)
    assert len(ids) < len(words_ids["input_ids"])


def test_names_pretokenizer_spells_every_word_of_a_name_one_way_whatever_follows_it():
    names = train_tokenizer(TinyConfig(vocab_size=1024, tokenizer_passages=500, pretokenizer="names"))
    assert names.decode(names(TEXT)["input_ids"]) == TEXT
    # "College" is followed by '"', " was", " (", "]" and "<" above; "Azonds" by "."
    for word in ("Grovotrin", "College", "Cikast", "Bram", "Azonds"):
        assert len(_occurrences(names, TEXT, word)) == 1, word
    trailing = train_tokenizer(TinyConfig(vocab_size=1024, tokenizer_passages=500, pretokenizer="trailing-space"))
    assert len(_occurrences(trailing, TEXT, "College")) > 1  # why "names" exists: "College " != "College"
    # lowercase words carry the spaces, so it is shorter than "words"
    words_ids = train_tokenizer(TinyConfig(vocab_size=1024, tokenizer_passages=500, pretokenizer="words"))(TEXT)
    assert len(names(TEXT)["input_ids"]) < len(words_ids["input_ids"])


def test_bytelevel_pretokenizer_spells_a_name_by_its_left_neighbour():
    tokenizer = train_tokenizer(TinyConfig(vocab_size=1024, tokenizer_passages=500))
    assert tokenizer.decode(tokenizer(TEXT)["input_ids"]) == TEXT
    assert len(_occurrences(tokenizer, TEXT, "Grovotrin")) > 1  # why "words" exists


def test_oracle_texts_are_whole_turns_and_make_state_words_single_tokens(words_tokenizer):
    turns = list(oracle_texts(5))
    assert len(turns) >= 10
    assert all(t.startswith("<think>") and ("</search>" in t or "</answer>" in t) for t in turns)
    for word in ("confirmed", "pending", "next"):
        assert len(words_tokenizer(word)["input_ids"]) == 1, word


@pytest.mark.parametrize("bad", [{"pretokenizer": "chars"}, {"oracle_episodes": -1}])
def test_bad_tiny_config_names_the_field(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        TinyConfig(**bad)


def test_a_model_folder_without_tokenizer_files_is_an_error_not_an_empty_tokenizer(tmp_path):
    # transformers 5 would build a 1-token tokenizer from config.json alone and carry on with garbage ids.
    from transformers import Qwen2Config

    Qwen2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                intermediate_size=64, vocab_size=50).save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no tokenizer at .*make-tiny"):
        load_tokenizer(tmp_path)
