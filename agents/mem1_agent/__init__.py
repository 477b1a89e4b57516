"""The MEM1 agent: a constant-memory LLM policy, rollouts, the paper's metrics, evaluation and training.

Imported as ``mem1_agent`` (the bare name ``agents`` belongs to a popular SDK on PyPI). It depends
on ``mem1_gym`` for the protocol and the environments; ``mem1_gym`` never imports it.

Read in this order:

* :mod:`mem1_agent.records` — ``Segment`` / ``Turn`` / ``Trajectory``, ``SegmentKind``
  (PROMPT, STATE, ACTION, OBSERVATION), ``FinishReason``, JSONL round trip.
* :mod:`mem1_agent.context` — ``mem1`` / ``full`` / ``truncate:K`` strategies and the stop strings
  of a turn (the forced final answer).
* :mod:`mem1_agent.policies` — one ``Policy.generate`` interface; backends ``oracle``, ``hf``
  (transformers, CPU/CUDA), ``vllm`` (GPU, lazy), ``openai`` / ``openai-chat`` (any compatible
  server); ``make_policy("hf:/path")``.
* :mod:`mem1_agent.rollout` — lock-step rollouts over several envs with exact per-turn records.
* :mod:`mem1_agent.metrics` — EM/F1, peak tokens, dependency, time, valid-action rate.
* :mod:`mem1_agent.eval`, :mod:`mem1_agent.report`, :mod:`mem1_agent.cli` — ``mem1-agent eval``.
* :mod:`mem1_agent.tiny` — a tiny Qwen2 and a locally trained tokenizer (``mem1-agent make-tiny``).
* :mod:`mem1_agent.train` — exact training batches (per-turn and stitched layouts, one mask
  function), advantages, PPO / GRPO / RLOO, SFT, the learner (``mem1-agent sft`` / ``train``).
* :mod:`mem1_agent.serve` — an OpenAI-compatible server for local models (``mem1-agent serve``).
* :mod:`mem1_agent.demo` — the main job (``mem1-agent demo``).

>>> import gymnasium as gym, mem1_gym
>>> from mem1_agent.context import Mem1Context
>>> from mem1_agent.policies import make_policy
>>> from mem1_agent.rollout import EpisodeSpec, rollout
>>> [traj] = rollout([gym.make("MEM1-MultiHopQA-2")], make_policy("oracle"), Mem1Context(), [EpisodeSpec(seed=0)])
>>> traj.em, [t.action_type for t in traj.turns][-1]
((1.0, 1.0), 'answer')
"""

__version__ = "0.1.0"
