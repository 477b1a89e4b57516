"""WebShop's reward against hand-computed values, including the original unit tests' reference values
(all matched -> 1.0; attributes by text only -> 2/3; one of three options missing -> 4/7 ≈ 0.5714;
type mismatch -> 2/7 ≈ 0.2857)."""

from math import isclose

import pytest

from mem1_gym.webshop.catalog import Product
from mem1_gym.webshop.goals import Goal
from mem1_gym.webshop.reward import (
    approximate_title_nouns,
    attribute_matches,
    get_reward,
    normalize_color,
    option_matches,
    type_reward,
)


def product(**overrides) -> Product:
    fields = dict(
        asin="B000000001", title="", description="", bullet_points=(), pricing=(35.0,), price=35.0,
        options=(), attributes=("tea tree", "essential oil", "natural ingredients"), category="beauty",
        query="query 1", product_category="a › b › c", title_nouns=("mens", "d.o.n.", "issue", "gca", "basketball", "sneakers", "shoes", "white"),
    )
    return Product(**{**fields, **overrides})


def goal(**overrides) -> Goal:
    fields = dict(
        asin="B000000001", instruction="i need shampoo", attributes=("tea tree", "essential oils", "natural ingredients"),
        options=(("color", "grey"), ("size", "XL")), price_upper=40.0, query="query 1", product_category="a › b › c",
        name="Mens D.O.N. Issue 2 Gca Basketball Sneakers Shoes Casual - Off White",
        name_nouns=("mens", "d.o.n.", "issue", "gca", "basketball", "sneakers", "shoes", "white"),
    )
    return Goal(**{**fields, **overrides})


SELECTED = {"color": "grey", "size": "XL"}


def test_everything_matched_is_one():
    result = get_reward(product(), goal(), 35.0, SELECTED)
    assert result.reward == 1.0
    assert (result.n_att, result.n_option, result.r_price, result.r_type) == (3, 2, True, 1.0)
    assert isclose(result.w_att + result.w_option + result.w_price, 1.0)


def test_attributes_found_only_in_the_text():
    bought = product(attributes=(), bullet_points=("this shampoo smells like lemons",),
                     description="Best shampoo on the market, made with natural ingredients")
    result = get_reward(bought, goal(), 35.0, SELECTED)
    assert result.n_att == 1 and isclose(result.reward, 4 / 6)  # the original's 2/3


def test_one_of_three_options_missing_is_4_over_7():
    bought = product(attributes=(), description="made with natural ingredients")
    three = goal(options=(("color", "grey"), ("size", "XL"), ("amount", "pack of 12")))
    result = get_reward(bought, three, 35.0, SELECTED)
    assert isclose(result.reward, 4 / 7) and isclose(result.reward, 0.5714, abs_tol=1e-4)
    assert result.r_option == pytest.approx(2 / 3)


def test_type_mismatch_halves_it_to_2_over_7():
    # Titles share 2 of the goal's 12 nouns (title score 1/6, in (0.1, 0.2]), and neither the
    # query nor two breadcrumb levels match: r_type = 0.5.
    goal_nouns = ("saireed", "ul", "prong", "power", "cord", "jbl", "bar", "bar", "channel", "k", "hd", "soundbar")
    bought = product(attributes=(), description="made with natural ingredients", query="query 2",
                     product_category="a › d › e", title_nouns=("brst", "ac", "power", "cord", "outlet", "socket"))
    three = goal(options=(("color", "grey"), ("size", "XL"), ("amount", "pack of 12")), name_nouns=goal_nouns)
    result = get_reward(bought, three, 35.0, SELECTED)
    assert result.title_score == pytest.approx(2 / 12)  # the denominator counts "bar" twice, as the original
    assert result.r_type == 0.5 and isclose(result.reward, 2 / 7) and isclose(result.reward, 0.2857, abs_tol=1e-4)


@pytest.mark.parametrize(
    "query, nouns, expected",
    [
        ("query 1", ("x",), 0.0),  # the query matches, but no shared noun: the last rule overrides
        ("query 2", ("mens",), 0.1),  # title score 1/11 < 0.1
        ("query 2", ("mens", "other"), 0.5),  # 2/11: no query, breadcrumb or > 0.2 title match
        ("query 1", ("mens", "other"), 1.0),  # 2/11 with the query matching
        ("query 2", ("mens", "other", "x", "y", "z", "a", "b", "c", "d", "e", "f"), 0.5),
    ],
)
def test_type_reward_rules(query, nouns, expected):
    bought = product(query=query, product_category="x › y", title_nouns=nouns)
    r_type, *_ = type_reward(bought, goal(name_nouns=("mens",) + ("other",) * 10))
    assert r_type == expected


def test_type_reward_breadcrumbs_need_two_shared_levels_in_any_order():
    g = goal(product_category="a › b › c")
    assert type_reward(product(product_category="b › c › a"), g)[2] is True
    assert type_reward(product(product_category="a › d › b"), g)[2] is True
    assert type_reward(product(product_category="a › a › d"), g)[2] is False
    assert type_reward(product(product_category="d › e › f"), g)[2] is False


def test_no_goal_nouns_scores_title_0_2():
    assert type_reward(product(), goal(name_nouns=()))[3] == 0.2


def test_attribute_fuzzy_and_substring_matching():
    assert attribute_matches(product(), ("tea tree", "essential oils", "natural ingredients")) == 3
    assert attribute_matches(product(attributes=("essential oil", "natural ingredients")), ("tea tree", "essential oils")) == 1
    none = product(attributes=("tea bag", "earl gray", "lipton"), title="English tea for breakfast",
                   bullet_points=("Soothing aroma",), description="Best tea made by Lipton")
    assert attribute_matches(none, ("tea tree", "essential oils", "natural ingredients")) == 0


def test_option_matching():
    assert option_matches(["pack of 12", "grey", "XL"], ["grey", "XL", "pack of 12"]) == 3
    assert option_matches(["pack of 12", "blue", "XL"], ["grey", "XL", "pack of 12"]) == 2
    assert option_matches(["pack of 12", "powder snow", "XL"], ["cool powder snow", "XL", "pack of 12"]) == 3
    assert option_matches([], ["a", "b"]) == 0
    assert option_matches(["heather grey melange"], ["grey"]) == 1  # reduced to "grey" first


def test_no_options_selected_and_goal_without_options():
    result = get_reward(product(), goal(), 35.0, {})
    assert result.n_option == 0 and isclose(result.reward, 4 / 6)
    no_options = get_reward(product(), goal(options=()), 35.0, {})
    assert no_options.r_option is None and no_options.reward == 1.0


def test_price_over_the_cap_loses_its_share():
    result = get_reward(product(), goal(price_upper=30.0), 35.0, SELECTED)
    assert result.r_price is False and isclose(result.reward, 5 / 6)


def test_normalize_color_takes_the_first_colour_contained():
    assert normalize_color("bright navy blue") == "blue"  # table order, not position in the text
    assert normalize_color("3 ounce") == "3 ounce"


def test_title_nouns_fallback_drops_function_words_and_numbers():
    nouns = approximate_title_nouns("Natural Deodorant for Women, Aluminum Free, 2.6 Ounce (Pack of 3)")
    assert nouns == ("natural", "deodorant", "women", "aluminum", "free", "ounce", "pack")
