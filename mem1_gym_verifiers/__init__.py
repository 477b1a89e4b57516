"""``vf-eval mem1_gym_verifiers ...``: verifiers finds a taskset, env and harness by the id of an importable
top-level module that exports them via ``__all__``; this is that module for :mod:`mem1_gym.integrations.verifiers`."""

from mem1_gym.integrations.verifiers import Mem1ChatHarness, Mem1Env, Mem1Taskset, load_environment

__all__ = ["Mem1ChatHarness", "Mem1Env", "Mem1Taskset", "load_environment"]
