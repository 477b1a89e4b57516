"""The MEM1 agent: a constant-memory LLM policy and its PPO learner (issue 3 and 4; not built yet).

Imported as ``mem1_agent`` (the bare name ``agents`` belongs to a popular SDK on PyPI). It depends
on ``mem1_gym`` for the protocol and the environments; ``mem1_gym`` never imports it.
"""

__version__ = "0.1.0"
