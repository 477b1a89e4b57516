"""The shortest loop: make an env, play it with any callable policy, report EM and F1.

    python examples/quickstart.py                 # the scripted oracle on MEM1-MultiHopQA-2
    python examples/quickstart.py --policy echo   # a policy that never searches (a baseline)
    python examples/quickstart.py --env MEM1-MultiHopQA-8 --episodes 20

A policy is any ``callable(observation: str) -> str`` returning a model turn such as
``"<think>...</think><search>query</search>"``; swap in your own model here. The env is wrapped in
``Mem1View``, so each observation is what the task prompt promises: the instructions and
questions, your previous turn and the latest search results (the bare env returns only the latest
results after ``reset``). A policy may also take ``(observation, info)``, as the oracle below does.
"""

import argparse

import gymnasium as gym

import mem1_gym  # noqa: F401  (registers the environment ids)
from mem1_gym.oracle import ScriptedOracle
from mem1_gym.wrappers import Mem1View, as_text_policy


def make_policy(name: str, env: gym.Env):
    if name == "oracle":
        oracle = ScriptedOracle()

        def act(obs, info):
            if info["turn"] == 0:  # a new episode: the oracle reads the task it is allowed to see
                oracle.reset(env.unwrapped.task)
            return oracle.act(info["observation_latest"], info["turns_left"])  # it keeps its own notes

        return act
    if name == "echo":
        return lambda obs: "<think>I will guess.</think><answer>unknown</answer>"
    raise SystemExit(f"unknown policy {name!r}; choose oracle or echo")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="MEM1-MultiHopQA-2")
    parser.add_argument("--policy", default="oracle", choices=("oracle", "echo"))
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--split", default="validation")
    args = parser.parse_args()

    env = Mem1View(gym.make(args.env, split=args.split))
    policy = as_text_policy(make_policy(args.policy, env))
    em, f1, turns = [], [], []
    for episode in range(args.episodes):
        obs, info = env.reset(seed=episode)
        done = False
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(obs, info))
            done = terminated or truncated
        em.append(info["em_sum"])
        f1.append(info["f1_sum"])
        turns.append(info["turn"])
        print(f"episode {episode}: EM {info['em_sum']:.0f}/{info['n_questions']}  F1 {info['f1_sum']:.2f}  turns {info['turn']}")
    n = len(em)
    print(f"{args.env} {args.policy}: mean EM count {sum(em) / n:.2f}, mean F1 sum {sum(f1) / n:.2f}, "
          f"mean turns {sum(turns) / n:.1f} over {n} episodes")
    env.close()


if __name__ == "__main__":
    main()
