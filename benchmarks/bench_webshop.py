"""WebShop env speed on the generated 1,000-product shop, each env beside the original-style baseline.

    python benchmarks/bench_webshop.py                     # ~2 min: 300 text, 40 browser episodes
    python benchmarks/bench_webshop.py --text-episodes 100 --browser-episodes 10

Every env plays the same scripted episodes (seeded: the oracle on every third episode, random
available actions, searches and junk otherwise; at most 15 turns), so the figures compare like
with like:
* ``MEM1-WebShop-Text``: pages built from the page model, text joined directly.
* baseline: the same env, but every step renders the page to HTML and parses it back with the
  standard library's parser for the observation and again for the clickables, as the original text
  env did with BeautifulSoup (2-3 parses per step).
* ``MEM1-WebShop``: Selenium + headless Chromium against the Flask site.
Step latency is wall time of ``env.step`` (median, p95); episodes/min include ``reset``.
Writes ``benchmarks/results/webshop.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path

os.environ.setdefault("SE_OFFLINE", "true")
os.environ.setdefault("SE_AVOID_STATS", "true")

import gymnasium as gym

import mem1_gym  # noqa: F401  (registers the ids)
from mem1_gym.webshop.env_base import PageView
from mem1_gym.webshop.env_text import TextFrontend
from mem1_gym.webshop.oracle import WebShopOracle
from mem1_gym.webshop.pages import parse_html, render_html

RESULTS = Path(__file__).parent / "results" / "webshop.json"


class ReparsingFrontend(TextFrontend):
    """The original's per-step cost: HTML rendered, then parsed for the text and for the clickables."""

    def _go(self, url, args=None) -> PageView:
        super()._go(url, args)
        page = self._page
        html = render_html(page)
        text, _, has_search = parse_html(html)  # the observation
        _, clickables, _ = parse_html(html)  # get_available_actions parses again
        return PageView(page.name, page.url, text, tuple(clickables), has_search, page.reward_info)


def scripted_action(rng: random.Random, info: dict, oracle: WebShopOracle | None) -> str:
    if oracle is not None:
        return oracle.act(info)
    if rng.random() < 0.1:
        return rng.choice(["junk", "click[nothing]", "search[more words]"])
    actions = [a for a in info["available_actions"] if a != "search[<keywords>]"]
    if "search[<keywords>]" in info["available_actions"] or not actions:
        return f"search[{' '.join(rng.sample(['natural', 'women', 'black', 'organic', 'large', 'tea', 'pack'], 2))}]"
    return rng.choice(actions)


def play(env, episodes: int) -> dict:
    """Step latencies (ms) and episodes/min over ``episodes`` scripted episodes."""
    latencies, rewards = [], []
    started = time.perf_counter()
    for seed in range(episodes):
        rng = random.Random(seed)
        obs, info = env.reset(seed=seed)
        oracle = WebShopOracle() if seed % 3 == 0 else None
        if oracle is not None:
            oracle.reset(env.unwrapped.goal)
        while True:
            action = scripted_action(rng, info, oracle)
            t0 = time.perf_counter()
            obs, reward, terminated, truncated, info = env.step(action)
            latencies.append((time.perf_counter() - t0) * 1e3)
            if terminated or truncated:
                rewards.append(reward)
                break
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "episodes": episodes,
        "steps": len(latencies),
        "median_step_ms": statistics.median(latencies),
        "p95_step_ms": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
        "episodes_per_min": episodes / elapsed * 60,
        "mean_reward": statistics.fmean(rewards),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text-episodes", type=int, default=300)
    parser.add_argument("--browser-episodes", type=int, default=40)
    args = parser.parse_args()

    text = gym.make("MEM1-WebShop-Text")
    rows = {"MEM1-WebShop-Text": play(text, args.text_episodes)}
    text.unwrapped._text = ReparsingFrontend(text.unwrapped._text.site)
    rows["baseline: render + re-parse HTML each step"] = play(text, args.text_episodes)
    text.close()
    browser = gym.make("MEM1-WebShop")
    browser.reset(seed=0)  # Chromium's start (about 1 s) is not a step
    rows["MEM1-WebShop (Chromium)"] = play(browser, args.browser_episodes)
    browser.close()

    print(f"\nWebShop, generated shop ({len(text.unwrapped.shop.catalog)} products), {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores\n")
    print("| env | episodes | steps | median step (ms) | p95 step (ms) | episodes/min | mean reward |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['episodes']} | {r['steps']} | {r['median_step_ms']:.3f} | {r['p95_step_ms']:.3f} | "
              f"{r['episodes_per_min']:.0f} | {r['mean_reward']:.3f} |")
    speedup = rows["baseline: render + re-parse HTML each step"]["median_step_ms"] / rows["MEM1-WebShop-Text"]["median_step_ms"]
    print(f"\ntext env vs re-parse baseline: {speedup:.1f}x faster median step "
          f"(targets: text <= 5 ms, browser <= 150 ms median)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"products": len(text.unwrapped.shop.catalog), "cores": os.cpu_count(), "rows": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
