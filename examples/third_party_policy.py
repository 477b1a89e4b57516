"""Any policy plays any env: a plain ``callable(str) -> str``, or an OpenAI-compatible endpoint.

    python examples/third_party_policy.py                                  # built-in callable, offline
    python examples/third_party_policy.py --env MEM1-WebQA-2 --episodes 20
    OPENAI_API_KEY=... python examples/third_party_policy.py --base-url https://api.openai.com/v1 --model gpt-4o-mini
    python examples/third_party_policy.py --base-url http://127.0.0.1:8000/v1  # e.g. `mem1-agent serve --model DIR`

The loop is the whole integration: ``gym.make``, a view wrapper, ``reset``, ``step(policy(obs))``
until the episode ends, then read ``info["em_sum"]`` / ``info["f1_sum"]`` (QA) or the purchase
reward (WebShop). The bare env returns only the latest results after ``reset``; the wrappers of
:mod:`mem1_gym.wrappers` make each observation complete:

* the built-in callable reads ``Mem1View`` (task prompt + its previous turn + the latest results).
  It is a baseline with no model: it searches the capitalised names of each question, then answers
  each question with the most frequent new name seen in its results (counts it keeps itself).
* the endpoint policy reads ``Transcript`` (task prompt + every turn and observation so far), sends
  it as the prompt and stops at the protocol's closing tags; the env finds the action in the
  model's turn itself.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter

import gymnasium as gym
import numpy as np

import mem1_gym  # noqa: F401  (registers the env ids)
from mem1_gym.protocol import QA_STOP_STRINGS
from mem1_gym.wrappers import Mem1View, Transcript
from mem1_gym.wrappers.candidates import entity_spans


def name_search_policy():
    """A callable(str) -> str with no model (QA envs, read through Mem1View): see the module docstring."""
    state = {"queue": [], "found": [], "current": 0}

    def act(view: str) -> str:
        if "[/HINT]" not in view:  # a new episode: the view is the task prompt alone (no results yet)
            questions = [line.split(": ", 1)[1] for line in view.splitlines() if line[:1] == "Q" and ": " in line]
            state["queue"] = [(i, span) for i, q in enumerate(questions) for span in entity_spans(q)[:1]]
            state["found"] = [Counter() for _ in questions]
        else:  # the latest results close the view: count the names that were not the query
            state["found"][state["current"]].update(s for s in entity_spans(view.split("[/HINT]")[-1]) if s != state["query"])
        if state["queue"]:
            state["current"], state["query"] = state["queue"].pop(0)
            return f"search[{state['query']}]"
        answers = [found.most_common(1)[0][0] if found else "unknown" for found in state["found"]]
        return "answer[" + "; ".join(answers) + "]"

    return act


def endpoint_policy(base_url: str, model: str | None, max_tokens: int, stop: tuple[str, ...]):
    """A callable(str) -> str backed by an OpenAI-compatible /v1/completions endpoint (reads Transcript)."""
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {os.environ.get('OPENAI_API_KEY', 'EMPTY')}"
    root = base_url.rstrip("/")
    if model is None:
        model = session.get(f"{root}/models", timeout=30).json()["data"][0]["id"]

    def act(transcript: str) -> str:
        body = {"model": model, "prompt": transcript, "max_tokens": max_tokens, "stop": list(stop), "temperature": 0}
        response = session.post(f"{root}/completions", json=body, timeout=120)
        if not response.ok:
            raise RuntimeError(f"{root}/completions answered HTTP {response.status_code}: {response.text[:300]}")
        choice = response.json()["choices"][0]
        # Servers cut the stop string off; the env needs the closing tag back to find the action.
        return choice["text"] + (choice.get("stop_reason") or _open_tag_closer(choice["text"], stop))

    return act


def _open_tag_closer(text: str, stop: tuple[str, ...]) -> str:
    opened = [s for s in stop if text.rfind("<" + s[2:]) > text.rfind(s)]
    return opened[0] if opened else ""


def play(env: gym.Env, policy, episodes: int, seed: int) -> dict:
    """Run ``policy`` for ``episodes`` episodes; mean EM/F1 per question (QA) and mean reward."""
    rewards, em, f1 = [], [], []
    for episode in range(episodes):
        obs, info = env.reset(seed=seed + episode)
        done = False
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(obs))
            done = terminated or truncated
        rewards.append(reward)
        if "em" in info:
            em.append(np.mean(info["em"]))
            f1.append(np.mean(info["f1"]))
    result = {"episodes": episodes, "reward": float(np.mean(rewards))}
    if em:
        result.update(em=float(np.mean(em)), f1=float(np.mean(f1)))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="MEM1-MultiHopQA-2", help="a QA env id (MultiHopQA or WebQA)")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="test")
    parser.add_argument("--base-url", default=None, help="OpenAI-compatible /v1 URL; omit for the built-in callable")
    parser.add_argument("--model", default=None, help="served model (default: the first the server lists)")
    parser.add_argument("--max-tokens", type=int, default=256)
    args = parser.parse_args()

    env = gym.make(args.env, split=args.split)
    if args.base_url:
        env = Transcript(env)
        policy = endpoint_policy(args.base_url, args.model, args.max_tokens, QA_STOP_STRINGS)
        name = f"endpoint {args.base_url}"
    else:
        env = Mem1View(env)
        policy, name = name_search_policy(), "built-in name-search callable"
    result = play(env, policy, args.episodes, args.seed)
    scores = f"EM {result['em']:.3f}  F1 {result['f1']:.3f}  " if "em" in result else ""
    print(f"{args.env} ({args.split}), {name}: {result['episodes']} episodes  {scores}reward {result['reward']:.3f}")
    env.close()


if __name__ == "__main__":
    main()
