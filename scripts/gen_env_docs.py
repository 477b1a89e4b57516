"""Write docs/envs.md: per env family, every ``gym.make`` kwarg and every ``info`` key.

    python scripts/gen_env_docs.py            # rewrite docs/envs.md
    python scripts/gen_env_docs.py --check    # exit 1 if docs/envs.md is not what this script writes

The kwarg tables come from the config dataclasses (name, type, default, the field's docstring), so
a new field is documented by rerunning this script. The ``info`` tables come from :data:`INFO`
below; tests/test_docs_envs.py checks that every key an episode emits is listed there, that every
listed key is named in the env class docstring's Information section, that every documented kwarg
is accepted by ``gym.make``, and that docs/envs.md is up to date.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import re
import sys
import textwrap
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "envs.md"

EVERY, LAST, PURCHASE = "every step", "last step", "after the purchase"
_QA_INFO = {
    "turn": (EVERY, "Turns used so far (0 after reset)."),
    "turns_left": (EVERY, "Turns left, counting the next one (1: the next turn must answer)."),
    "max_turns": (EVERY, "The episode's turn budget."),
    "task_id": (EVERY, "Id of the task (its split and index)."),
    "task_index": (EVERY, "Index of the task in the split (`reset(options={\"task_index\": i})` replays it)."),
    "n_questions": (EVERY, "Questions in the task (N)."),
    "action_type": (EVERY, "What the turn did: \"search\", \"answer\", \"invalid\" (WebQA also \"open\"); \"\" after reset."),
    "valid_action": (EVERY, "Whether the turn held exactly one well-formed action."),
    "error": (EVERY, "Why the action was invalid or failed; \"\" when it did not."),
    "query": (EVERY, "The search query of this turn (\"\" otherwise)."),
    "has_think": (EVERY, "Whether the turn had a `<think>` block (the agent's memory)."),
    "consumed_chars": (EVERY, "Characters of the turn the env read, through the action's closing tag: "
                              "trainers cut the model turn there."),
    "injected": (EVERY, "The exact text the env appended to the transcript: the observation."),
    "em": (LAST, "Exact match per question, in order (0 or 1)."),
    "f1": (LAST, "Token F1 per question, in order."),
    "em_sum": (LAST, "EM count: questions answered exactly (0..N, the paper's score)."),
    "f1_sum": (LAST, "Summed F1 (0..N)."),
    "n_correct": (LAST, "Questions with EM 1."),
    "success": (LAST, "Every question answered exactly."),
    "answered": (LAST, "The episode ended with an answer (not by running out of turns)."),
    "n_answers": (LAST, "Answers given (split at semicolons)."),
    "answer_count_mismatch": (LAST, "The number of answers differs from the number of questions."),
}
INFO: dict[str, dict[str, tuple[str, str]]] = {
    "MultiHopQA": {
        **_QA_INFO,
        "doc_ids": (EVERY, "Ids of the passages this search returned ([] otherwise)."),
        "evidence": (LAST + ", when every question lists its supporting passages (the synthetic world)",
                     "Per question, the share of its supporting passages some search of the episode retrieved."),
    },
    "WebQA": {
        **_QA_INFO,
        "url": (EVERY, "The page an `<open>` asked for (\"\" otherwise)."),
        "provider": (EVERY, "Name of the search provider (miniweb, serper, brave)."),
        "result_urls": (EVERY, "URLs of the results shown by this search."),
        "search_error": (EVERY, "Why the provider failed this search (\"\" when it did not)."),
        "open_error": (EVERY, "Why the page was refused or failed (\"\" when it was not)."),
        "page_cut": (EVERY, "The opened page's text was cut at `page_chars`."),
    },
    "WebShop": {
        "turn": (EVERY, "Turns used so far (0 after reset)."),
        "turns_left": (EVERY, "Turns left, counting the next one."),
        "max_turns": (EVERY, "The episode's turn budget."),
        "goal_id": (EVERY, "Id of the goal (its split and index)."),
        "goal_index": (EVERY, "Index of the goal in the split (`reset(options={\"goal_index\": i})` replays it)."),
        "split": (EVERY, "The split the goal comes from."),
        "action_type": (EVERY, "\"search\", \"click\" or \"invalid\"; \"\" after reset."),
        "action": (EVERY, "The action as the env understood it, e.g. \"click[buy now]\" (\"\" if invalid)."),
        "valid_action": (EVERY, "Whether the action was well formed and available on the page."),
        "error": (EVERY, "Why the action was rejected; \"\" when it was not."),
        "page": (EVERY, "Page kind: search, results, item, description, features, reviews, attributes, "
                        "done or expired (the site dropped the session)."),
        "url": (EVERY, "Path of the current page on the site."),
        "available_actions": (EVERY, "The actions the page offers, as the agent must write them."),
        "has_think": (EVERY, "Whether the turn had a `<think>` block."),
        "has_summary": (EVERY, "Whether the turn had a `<summary>` block (the agent's memory)."),
        "consumed_chars": (EVERY, "Characters of the turn the env read, through the action's closing tag."),
        "browser_error": (EVERY, "The browser failed on this step (always False in MEM1-WebShop-Text)."),
        "injected": (EVERY, "The exact text the env appended to the transcript: the observation."),
        "reward": (PURCHASE, "The purchase reward in [0, 1] before `reward_scale` (docs/webshop.md)."),
        "r_type": (PURCHASE, "Product-type factor: 1, 0.5, 0.1 or 0."),
        "query_match": (PURCHASE, "The product came from the goal's search query."),
        "category_match": (PURCHASE, "At least 2 breadcrumb levels shared with the goal's product."),
        "title_score": (PURCHASE, "Share of the goal title's nouns found in the product's title."),
        "r_att": (PURCHASE, "Share of the goal's attributes the product has."),
        "n_att": (PURCHASE, "Number of goal attributes."),
        "w_att": (PURCHASE, "Weight of the attribute term in the reward."),
        "r_option": (PURCHASE, "Share of the goal's options selected (None when the goal has none)."),
        "n_option": (PURCHASE, "Number of goal options."),
        "w_option": (PURCHASE, "Weight of the option term."),
        "r_price": (PURCHASE, "The price was within the goal's cap."),
        "w_price": (PURCHASE, "Weight of the price term."),
        "success": (PURCHASE + " (False on truncation)", "reward == 1."),
    },
}


class Family(NamedTuple):
    name: str
    env_ids: str
    env_class: str
    configs: tuple[str, ...]  # "module:Class", flattened into one kwarg table, later ones win
    skip: tuple[str, ...]  # fields that are not kwargs
    info: str  # key of INFO
    note: str


FAMILIES = (
    Family("MultiHopQA", "`MEM1-MultiHopQA-N`, N in 1, 2, 3, 4, 6, 8, 16", "mem1_gym.envs.multihop_qa:MultiHopQAEnv",
           ("mem1_gym.envs.qa_common:QAConfig",), (), "MultiHopQA",
           "`n_questions` is set by the id. `gym.make_vec(id, num_envs=K, vectorization_mode=\"vector_entry_point\")` "
           "batches the searches of K envs."),
    Family("WebQA", "`MEM1-WebQA-N`, N in 1, 2, 4, 8, 16", "mem1_gym.envs.web_qa:WebQAEnv",
           ("mem1_gym.envs.web_qa:WebQAConfig",), (), "WebQA", "`n_questions` is set by the id."),
    Family("WebShop-Text", "`MEM1-WebShop-Text`", "mem1_gym.webshop.env_text:WebShopTextEnv",
           ("mem1_gym.webshop.env_base:WebShopConfig", "mem1_gym.webshop.shop:ShopConfig"), ("shop",), "WebShop",
           "The shop's fields are given flat, e.g. `gym.make(\"MEM1-WebShop-Text\", products_path=...)`."),
    Family("WebShop", "`MEM1-WebShop` (needs `pip install \"mem1-gym[web]\"` and Chromium)",
           "mem1_gym.webshop.env_browser:WebShopEnv",
           ("mem1_gym.webshop.env_base:WebShopConfig", "mem1_gym.webshop.shop:ShopConfig",
            "mem1_gym.webshop.browser:BrowserConfig"), ("shop",), "WebShop",
           "The same kwargs and `info` keys as MEM1-WebShop-Text, plus the browser's."),
)

WRAPPER_INFO = {
    "observation_latest": ("`Mem1View`, `Transcript`", "The env's own observation of this step (the view holds more)."),
    "observation_text": ("`TextObservation`", "The text the vector observation encodes."),
    "action_masked": ("`DiscreteActions`", "The chosen slot was masked: played as an invalid action."),
}


def load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(__import__(module, fromlist=[name]), name)


def field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring (the string literal under it), base classes first so subclasses override."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = after.value.value
    return docs


class Kwarg(NamedTuple):
    name: str
    type: str
    default: Any
    doc: str


def kwargs_of(family: Family) -> list[Kwarg]:
    """Every ``gym.make`` kwarg of the family, in field order (a later config's field replaces one of the same name)."""
    rows: dict[str, Kwarg] = {}
    for path in family.configs:
        cls = load(path)
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            if f.name in family.skip:
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows[f.name] = Kwarg(f.name, str(f.type), default, docs.get(f.name, ""))
    return list(rows.values())


_ROLE = re.compile(r":[a-z]+:`~?(?:[\w.]+\.)?([^`.]+)`|``([^`]+)``")


def markdown(text: str) -> str:
    """One docstring as one table cell: RST roles and literals as Markdown code, one line, pipes escaped."""
    text = _ROLE.sub(lambda m: f"`{m.group(1) or m.group(2)}`", " ".join(text.split()))
    return text.replace("|", "\\|")


def _default(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def render() -> str:
    lines = [
        "# Environments: `gym.make` kwargs and `info` keys",
        "",
        "Generated by `python scripts/gen_env_docs.py` from the config dataclasses (kwargs) and the",
        "script's `INFO` table (checked against what episodes emit by tests/test_docs_envs.py); do not edit by hand.",
        "Every env also takes Gymnasium's `render_mode` (\"ansi\": `render()` returns the last observation).",
        "",
    ]
    for family in FAMILIES:
        lines += [f"## {family.name}: {family.env_ids}", "", f"Class `{family.env_class}`. {family.note}", "",
                  "| kwarg | type | default | meaning |", "|---|---|---|---|"]
        lines += [f"| `{k.name}` | `{markdown(k.type)}` | `{_default(k.default)}` | {markdown(k.doc)} |"
                  for k in kwargs_of(family)]
        if family.name != "WebShop":  # the browser env's keys are WebShop-Text's (its note says so)
            lines += ["", "| `info` key | present | meaning |", "|---|---|---|"]
            lines += [f"| `{key}` | {when} | {markdown(meaning)} |" for key, (when, meaning) in INFO[family.info].items()]
        lines.append("")
    lines += ["## Keys the wrappers add (`mem1_gym.wrappers`)", "", "| `info` key | wrapper | meaning |", "|---|---|---|"]
    lines += [f"| `{key}` | {where} | {meaning} |" for key, (where, meaning) in WRAPPER_INFO.items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description="Write docs/envs.md from the env configs.")
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/envs.md differs from what would be written")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.is_file() else ""
        if current != text:
            print(f"{OUT} is stale: run python scripts/gen_env_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
