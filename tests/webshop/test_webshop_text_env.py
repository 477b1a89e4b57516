"""MEM1-WebShop-Text: the Gymnasium contract, the protocol, the oracle, fuzzing and the page model."""

import doctest
import json
import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mem1_gym  # noqa: F401  (registers the ids)
from mem1_gym.protocol import format_shop_turn, parse_shop_action
from mem1_gym.webshop import env_text
from mem1_gym.webshop.oracle import WebShopOracle
from mem1_gym.webshop.pages import Node, Page, parse_html, render_html
from mem1_gym.webshop.search import SEARCH_RETURN_N

TOKENS = ["<think>", "</think>", "<summary>", "</summary>", "<answer>", "</answer>", "search[", "click[", "]", "[",
          "buy now", "next >", "< prev", "back to search", " ", "\n", "x", "Röntgen", "\x00", "\ue007", "😀", "中"]


@pytest.fixture(scope="module")
def env():
    env = gym.make("MEM1-WebShop-Text")
    yield env
    env.close()


def play(env, oracle, **reset_kwargs):
    obs, info = env.reset(**reset_kwargs)
    oracle.reset(env.unwrapped.goal)
    while True:
        obs, reward, terminated, truncated, info = env.step(oracle.act(info))
        if terminated or truncated:
            return reward, info


def test_check_env_passes_with_no_warnings():
    env = gym.make("MEM1-WebShop-Text")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []
    env.close()
    env.close()  # idempotent


def test_doctest_of_the_env():
    assert doctest.testmod(env_text, raise_on_error=False).failed == 0


def test_same_seed_same_goal_prices_and_cap(env):
    first, info = env.reset(seed=11)
    goal = env.unwrapped.goal
    second, _ = env.reset(seed=11)
    assert first == second and env.unwrapped.goal == goal and "price lower than" in goal.instruction
    other = gym.make("MEM1-WebShop-Text")  # another env (another process would do the same)
    assert other.reset(seed=11)[0] == first and other.unwrapped.goal.price_upper == goal.price_upper
    assert other.reset(seed=12)[0] != first
    other.close()


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_oracle_buys_the_goal_with_reward_one(split):
    env, oracle = gym.make("MEM1-WebShop-Text", split=split), WebShopOracle()
    goals = env.unwrapped.goals
    for index in range(0, len(goals), max(1, len(goals) // 150)):
        reward, info = play(env, oracle, options={"goal_index": index})
        assert reward == 1.0 and info["success"] and info["page"] == "done", (index, env.unwrapped.goal)
        assert info["r_type"] == 1.0 and info["r_price"] is True and info["turn"] <= 15
    env.close()


def test_a_full_model_turn_is_parsed(env):
    env.reset(seed=0)
    turn = format_shop_turn("find it", "nothing yet", "search[deodorant]") + "\nignored"
    obs, reward, terminated, truncated, info = env.step(turn)
    assert info["valid_action"] and info["has_think"] and info["has_summary"] and info["page"] == "results"
    assert info["consumed_chars"] == len(turn) - len("\nignored") and info["injected"] == obs
    assert obs.startswith("\n\n<state>\n[HINT]You have 14 turns left.[/HINT]\n") and "click[next >]" in obs
    assert len([a for a in info["available_actions"] if a.startswith("click[b0")]) == 10


@pytest.mark.parametrize(
    "action, error",
    [
        ("hello", "no <answer>"),
        ("<answer>buy it</answer>", "search[keywords] or click[label]"),
        ("<answer>click[buy now]", "unclosed <answer>"),
        ("click[]", "empty click[]"),
        ("click[buy now]", "not available"),
        ("search[\ue007\ue006]", "empty search"),
    ],
)
def test_invalid_and_unavailable_actions_explain_themselves(env, action, error):
    obs0, _ = env.reset(seed=1)
    obs, reward, terminated, truncated, info = env.step(action)
    assert not info["valid_action"] and error in info["error"] and reward == 0.0
    assert not terminated and not truncated and info["page"] == "search"
    assert "<state>" in obs and "search[<keywords>]" in obs and ("not available" in obs or "no valid action" in obs)


def test_search_only_from_the_search_page_unless_configured(env):
    env.reset(seed=2)
    env.step("search[shampoo]")
    assert not env.step("search[coffee]")[4]["valid_action"]
    anywhere = gym.make("MEM1-WebShop-Text", search_from_any_page=True)
    anywhere.reset(seed=2)
    anywhere.step("search[shampoo]")
    info = anywhere.step("click[b0" + anywhere.unwrapped.available_actions[-1][len("click[b0"):])[4]
    assert info["page"] == "item" and "search[<keywords>]" in info["available_actions"]
    assert anywhere.step("search[coffee]")[4]["page"] == "results"
    anywhere.close()


def test_turn_budget_truncates_and_penalty_applies():
    env = gym.make("MEM1-WebShop-Text", max_turns=3, invalid_action_penalty=0.5)
    env.reset(seed=0)
    assert env.step("nonsense")[1] == -0.5
    env.step("search[tea]")
    obs, reward, terminated, truncated, info = env.step("click[next >]")
    assert truncated and not terminated and info["turns_left"] == 0 and info["success"] is False
    assert "[HINT]You have no turns left.[/HINT]" in obs
    with pytest.raises(gym.error.ResetNeeded):
        env.step("click[next >]")
    env.close()


def test_purchase_reports_the_breakdown_and_scales(env):
    scaled = gym.make("MEM1-WebShop-Text", reward_scale=10.0)
    reward, info = play(scaled, WebShopOracle(), seed=5)
    assert reward == 10.0 and info["reward"] == 1.0
    for key in ("r_type", "query_match", "category_match", "title_score", "r_att", "n_att", "w_att",
                "r_option", "n_option", "w_option", "r_price", "w_price"):
        assert key in info
    scaled.close()


def test_results_pages_hold_ten_of_at_most_fifty_hits(env):
    env.reset(seed=3)
    info = env.step("search[natural organic free]")[4]
    assert "click[< prev]" not in info["available_actions"]
    pages = 1
    while "click[next >]" in info["available_actions"]:
        info = env.step("click[next >]")[4]
        pages += 1
    assert pages == SEARCH_RETURN_N // 10  # no "Next >" into empty pages (a decision; see docs/webshop.md)
    assert len(env.unwrapped.shop.search.search("natural organic free")) == SEARCH_RETURN_N


def test_html_and_page_text_agree_on_every_page_kind(env):
    """The browser reads the text nodes of the HTML, the text env joins the nodes: both must agree."""
    from mem1_gym.webshop.site import Site

    site = Site(env.unwrapped.shop)
    site.show_attributes = True
    pages = [site.dispatch("/nope/unknown", {})]
    for index, goal in enumerate(env.unwrapped.goals[:20]):
        sid = f"html{index}"
        pages.append(site.dispatch(site.open_session(sid, goal), {}))
        for page_number in (1, 2, 5):
            pages.append(site.dispatch(f"/{sid}/results", {"q": goal.instruction, "page": str(page_number)}))
        options = json.dumps(dict(goal.options[:1]))
        for sub in ("", "/description", "/features", "/reviews", "/attributes"):
            pages.append(site.dispatch(f"/{sid}/item/{goal.asin}{sub}", {"q": "x", "options": options}))
        pages.append(site.dispatch(f"/{sid}/buy/{goal.asin}", {"options": options}))
    assert {p.name for p in pages} == {"not_found", "search", "results", "item", "description", "features",
                                       "reviews", "attributes", "done"}
    for page in pages:
        text, clickables, has_search = parse_html(render_html(page))
        assert (text, clickables, has_search) == (page.text, page.raw_clickables(), bool(page.search_url))


def test_colliding_labels_are_qualified_and_duplicates_dropped():
    page = Page("item", "/s", (
        Node("button", "Buy Now", href="/a"), Node("option", "black", href="/b", group="color"),
        Node("option", "black", href="/c", group="band color"), Node("option", "buy now", href="/d", group="size"),
        Node("button", "Buy Now", href="/e"),
    ))
    targets = page.clickable_targets()
    assert list(targets) == ["buy now", "color: black", "band color: black", "size: buy now"]
    assert targets["band color: black"].href == "/c" and targets["buy now"].href == "/a"


def test_protocol_parser_is_linear_and_total():
    assert parse_shop_action("<answer>" * 100_000).error == "unclosed <answer> tag"
    assert parse_shop_action("x" * 1_000_000).valid is False
    parsed = parse_shop_action("<summary>m</summary><answer> Click[Buy Now] </answer>")
    assert parsed.text == "click[Buy Now]" and parsed.summary == "m"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(action=st.one_of(st.text(max_size=200), st.lists(st.sampled_from(TOKENS), max_size=30).map("".join)))
def test_fuzzed_actions_never_raise(env, action):
    if env.unwrapped._done:
        env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(action)
    assert env.observation_space.contains(obs) and isinstance(reward, float)
    assert info["valid_action"] or info["error"]
