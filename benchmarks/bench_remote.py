"""Remote envs (``mem1-gym serve-env`` + ``MEM1-Remote``) against the same envs in process, in one run.

    python benchmarks/bench_remote.py                          # about 8 min on 2 cores (64 Chromiums at 32 sessions)
    python benchmarks/bench_remote.py --skip-browser --sessions 1 --steps 1000   # the MultiHopQA target only

What is measured, per env and per number of concurrent sessions (1 and 32): env steps/s (all
sessions together) and the median latency of one ``env.step``, for
(a) local: ``gym.make(env_id)`` in this process, one thread per session, and
(b) remote: ``gym.make("MEM1-Remote", ...)`` against ``mem1-gym serve-env`` started by this script
as a separate process on 127.0.0.1, one thread per session here as well.
Every session plays the same actions in (a) and (b): MultiHopQA-2 one search of a training
question's hop per step; WebShop-Text and WebShop (Selenium + Chromium) a cycle of search, open a
product, back to search. Episodes never end (``max_turns`` is huge), so every step is timed and no
reset is. The target of issue 22: the remote MultiHopQA step adds <= 2 ms at the median (1 session).
Client and server share this machine's cores, so at 32 sessions the remote figures include the
server's CPU time. Writes ``benchmarks/results/remote.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

os.environ.setdefault("SE_OFFLINE", "true")
os.environ.setdefault("SE_AVOID_STATS", "true")

import gymnasium as gym

import mem1_gym  # noqa: F401  (registers the ids)

ENDLESS = 10**6  # max_turns: no episode ends, so no step is followed by an (untimed) reset
SHOP_WORDS = ["bed frame", "deodorant", "shampoo", "running shoes", "coffee", "headphones", "t-shirt", "lamp"]
_NOT_PRODUCTS = {"click[back to search]", "click[next >]", "click[< prev]"}


def qa_policy(queries: list[str]):
    def act(info: dict, step: int, session: int) -> str:
        return f"<think>.</think><search>{queries[(session * 997 + step) % len(queries)]}</search>"

    return act


def shop_act(info: dict, step: int, session: int) -> str:
    """Search, open a product of the results, back to search: the pages an agent visits most."""
    actions = info["available_actions"]
    if "search[<keywords>]" in actions:
        return f"<answer>search[{SHOP_WORDS[(session + step) % len(SHOP_WORDS)]}]</answer>"
    products = [a for a in actions if a not in _NOT_PRODUCTS] if info["page"] == "results" else []
    if products:
        return f"<answer>{products[session % len(products)]}</answer>"
    return "<answer>click[back to search]</answer>"


def measure(make, sessions: int, steps: int, act) -> dict:
    """Steps/s of ``sessions`` envs stepped at once (one thread each) and the median step latency."""
    envs = []
    try:
        # Made and reset one after the other, untimed: 32 Chromiums started at once on 2 cores
        # outlast Selenium's 30 s session-start timeout.
        while len(envs) < sessions:
            envs.append(make())
        infos = [env.reset(seed=i)[1] for i, env in enumerate(envs)]

        def play(i: int) -> tuple[list[float], float, float]:
            env, info, latencies = envs[i], infos[i], []
            started = time.perf_counter()
            for step in range(steps):
                action = act(info, step, i)
                t = time.perf_counter()
                _, _, terminated, truncated, info = env.step(action)
                latencies.append(time.perf_counter() - t)
                if terminated or truncated:
                    why = info.get("remote_error") or info.get("error")
                    raise RuntimeError(f"the episode ended at step {step}: {why}")
            return latencies, started, time.perf_counter()

        with ThreadPoolExecutor(sessions) as pool:
            runs = list(pool.map(play, range(sessions)))
    finally:
        for env in envs:
            env.close()
    latencies = [x for run, _, _ in runs for x in run]
    wall = max(end for _, _, end in runs) - min(start for _, start, _ in runs)
    return {"steps_per_s": sessions * steps / wall, "median_ms": 1e3 * statistics.median(latencies),
            "p95_ms": 1e3 * statistics.quantiles(latencies, n=20)[-1]}


def start_server(env_ids: list[str], max_sessions: int) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "mem1_gym", "serve-env", "--port", "0", "--max-sessions", str(max_sessions)]
    for env_id in env_ids:
        command += ["--env", env_id]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    found = re.search(r" on (http://\S+) ", line)
    if found is None:
        proc.kill()
        raise RuntimeError(f"serve-env did not start: {line}{proc.stderr.read()}")
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining its log
    return proc, found.group(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="timed steps of each session, QA and text shop")
    parser.add_argument("--browser-steps", type=int, default=6, help="timed steps of each browser session")
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 32], help="concurrent sessions to measure")
    parser.add_argument("--skip-browser", action="store_true", help="leave MEM1-WebShop out (no Chromium here)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "remote.json"))
    args = parser.parse_args()

    from bench_vector import hop_queries  # the sibling benchmark's realistic search queries

    from mem1_gym.data.synthetic import WorldConfig, ensure_world

    queries = hop_queries(ensure_world(WorldConfig()), 5000)
    plans = [("MEM1-MultiHopQA-2", qa_policy(queries), args.steps),
             ("MEM1-WebShop-Text", shop_act, args.steps)]
    if not args.skip_browser:
        plans.append(("MEM1-WebShop", shop_act, args.browser_steps))
    proc, url = start_server([env_id for env_id, _, _ in plans], max_sessions=max(args.sessions) + 8)
    rows = []
    try:
        for env_id, act, steps in plans:
            for sessions in args.sessions:
                per_session = steps
                local = measure(partial(gym.make, env_id, max_turns=ENDLESS), sessions, per_session, act)
                remote = measure(partial(gym.make, "MEM1-Remote", url=url, env_id=env_id, max_turns=ENDLESS,
                                         timeout=120), sessions, per_session, act)
                rows.append({"env_id": env_id, "sessions": sessions, "steps_per_session": per_session,
                             "local": local, "remote": remote})
                print(f"  {env_id} x {sessions}: local {local['steps_per_s']:,.0f}/s, remote "
                      f"{remote['steps_per_s']:,.0f}/s", file=sys.stderr, flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=60)

    print(f"\nsteps/s of all sessions together; median / p95 latency of one step; {os.cpu_count()} CPU cores "
          f"shared by client and server, Python {platform.python_version()}\n")
    print("| env | sessions | local steps/s | remote steps/s | remote / local | local median ms | "
          "remote median ms | added ms (median) | remote p95 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        local, remote = row["local"], row["remote"]
        print(f"| {row['env_id']} | {row['sessions']} | {local['steps_per_s']:,.1f} | {remote['steps_per_s']:,.1f} | "
              f"{remote['steps_per_s'] / local['steps_per_s']:.2f} | {local['median_ms']:.2f} | "
              f"{remote['median_ms']:.2f} | {remote['median_ms'] - local['median_ms']:+.2f} | {remote['p95_ms']:.2f} |")
    qa = next(r for r in rows if r["env_id"] == "MEM1-MultiHopQA-2" and r["sessions"] == min(args.sessions))
    added = qa["remote"]["median_ms"] - qa["local"]["median_ms"]
    print(f"\ntarget (issue 22): the remote MultiHopQA step adds <= 2 ms at the median: {added:+.2f} ms "
          f"({'met' if added <= 2 else 'NOT met'})")
    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "setup": {"steps": args.steps, "browser_steps": args.browser_steps, "sessions": args.sessions},
              "rows": rows, "qa_added_ms": added}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
