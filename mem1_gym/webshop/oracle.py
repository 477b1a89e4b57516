"""A scripted shopper that knows the goal: searches the instruction's keywords, finds the target,
selects the goal's options and buys. Reward 1.0 on every generated goal (tested); used in tests,
benchmarks and as a source of demonstrations.

It reads only what an agent reads (the page name and the available actions in ``info``) plus the
goal; when the target is not among the 50 hits of the instruction's keywords it goes back and
searches the target's title instead.
"""

from __future__ import annotations

import re

from mem1_gym.protocol import format_shop_turn
from mem1_gym.webshop.goals import Goal

_PRICE_CLAUSE_RE = re.compile(r",? and price lower than [0-9.]+ dollars$")


def instruction_keywords(instruction: str) -> str:
    """The instruction without its price clause and without the " with name: value" option list."""
    text = _PRICE_CLAUSE_RE.sub("", instruction)
    return text.split(" with ")[0].strip()


class WebShopOracle:
    """``reset(goal)``, then ``act(info) -> turn`` until the episode ends."""

    def __init__(self, max_result_pages: int = 5):
        self.max_result_pages = max_result_pages
        self.goal: Goal | None = None

    def reset(self, goal: Goal) -> None:
        self.goal = goal
        self._queries = [instruction_keywords(goal.instruction), goal.name]
        self._result_pages = 0
        self._selected: set[tuple[str, str]] = set()

    def act(self, info: dict) -> str:
        """The next turn, from ``info["page"]`` and ``info["available_actions"]``."""
        page, actions = info["page"], set(info["available_actions"])
        if page == "search":
            query = self._queries.pop(0) if len(self._queries) > 1 else self._queries[0]
            self._result_pages = 0
            return self._turn(f"search[{query}]", "search for the target")
        if page == "results":
            return self._on_results(actions)
        if page == "item":
            return self._on_item(actions)
        return self._turn("click[< prev]", "back to the product")

    def _on_results(self, actions: set[str]) -> str:
        self._result_pages += 1
        target = f"click[{self.goal.asin.lower()}]"
        if target in actions:
            return self._turn(target, "the target is on this page")
        if "click[next >]" in actions and self._result_pages < self.max_result_pages:
            return self._turn("click[next >]", "not on this page")
        return self._turn("click[back to search]", "not in the results; search for its title")

    def _on_item(self, actions: set[str]) -> str:
        for group, value in self.goal.options:
            if (group, value) in self._selected:
                continue
            candidates = [f"click[{value}]", f"click[{group}: {value}]"]
            if not group:  # human goals list values only: any group offering the value
                candidates += sorted(a for a in actions if a.endswith(f": {value}]"))
            for action in candidates:
                if action in actions:
                    self._selected.add((group, value))
                    return self._turn(action, f"select {value}")
        return self._turn("click[buy now]", "all options selected")

    def _turn(self, action: str, why: str) -> str:
        return format_shop_turn(why, f"shopping for {self.goal.asin}", action)
