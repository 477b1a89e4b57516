import pytest

from mem1_gym.scoring import exact_match, f1_score, score_answer_text, score_answers


@pytest.mark.parametrize(
    "pred, aliases, em, f1",
    [
        ("Paris", ["paris"], 1.0, 1.0),
        ("the Paris", ["Paris, France", "Paris"], 1.0, 1.0),  # article dropped, second alias matches
        ("Paris France", ["Paris, France"], 1.0, 1.0),  # punctuation dropped
        ("Paris, Texas", ["Paris"], 0.0, 2 / 3),  # p = 1/2, r = 1 -> 2/3
        ("Wilhelm Röntgen", ["Wilhelm Conrad Röntgen"], 0.0, 0.8),  # p = 1, r = 2/3 -> 0.8
        ("Rontgen", ["Röntgen"], 0.0, 0.0),  # diacritics are kept
        ("12\u00a0May 1990", ["12 May 1990"], 1.0, 1.0),  # NBSP inside a date
        ("", ["Paris"], 0.0, 0.0),  # empty answer
        ("a an the", ["Paris"], 0.0, 0.0),  # normalises to empty
        ("blue blue", ["blue"], 0.0, 2 / 3),  # multiset overlap: p = 1/2, r = 1
        ("x", [], 0.0, 0.0),  # no alias at all
    ],
)
def test_single_objective(pred, aliases, em, f1):
    assert exact_match(pred, aliases) == em
    assert f1_score(pred, aliases) == pytest.approx(f1)


def test_summed_em_count_and_lists():
    golds = [["Paris"], ["1999", "nineteen ninety-nine"], ["Ada Lovelace", "A. Lovelace"]]
    score = score_answer_text("paris; Nineteen ninety-nine; Ada", golds)
    assert score.em == (1.0, 1.0, 0.0)
    assert score.f1 == pytest.approx((1.0, 1.0, 2 / 3))  # "ada" vs "ada lovelace": p 1, r 1/2
    assert score.em_sum == 2.0 and not score.success and not score.count_mismatch


def test_initial_a_is_an_article_under_squad_normalisation():
    # "A. Lovelace" normalises to "lovelace": SQuAD drops "a" as an article, initials included.
    assert exact_match("Lovelace", ["A. Lovelace"]) == 1.0


def test_missing_answers_score_zero_and_are_flagged():
    score = score_answers(["Paris"], [["Paris"], ["Rome"], ["Oslo"]])
    assert score.em == (1.0, 0.0, 0.0) and score.f1 == (1.0, 0.0, 0.0)
    assert score.count_mismatch and score.n_given == 1 and score.n_expected == 3


def test_extra_answers_are_ignored_and_flagged():
    score = score_answer_text("Paris; Rome; Oslo; Bern", [["Paris"], ["Rome"]])
    assert score.em == (1.0, 1.0) and score.success and score.count_mismatch and score.n_given == 4


def test_positional_not_set_matching():
    assert score_answer_text("Rome; Paris", [["Paris"], ["Rome"]]).em_sum == 0.0


def test_hundred_part_answer():
    score = score_answer_text(";".join(["x"] * 100), [["x"], ["y"]])
    assert score.em == (1.0, 0.0) and score.n_given == 100
