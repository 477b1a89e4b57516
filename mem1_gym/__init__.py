"""mem1-gym: Gymnasium environments for long-horizon language agents with verifiable rewards.

``import mem1_gym`` registers every environment id (Gymnasium 1.x has no plugin discovery);
``gym.make("mem1_gym:MEM1-MultiHopQA-16")`` works without the import too. Registration uses
string entry points, so nothing heavy is imported here.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

__version__ = "0.1.0"

MULTIHOP_QA_HORIZONS = (1, 2, 3, 4, 6, 8, 16)


def _register_all() -> None:
    for n in MULTIHOP_QA_HORIZONS:
        env_id = f"MEM1-MultiHopQA-{n}"
        if env_id not in registry:
            register(id=env_id, entry_point="mem1_gym.envs.multihop_qa:MultiHopQAEnv", kwargs={"n_questions": n})


_register_all()

ENV_IDS = tuple(f"MEM1-MultiHopQA-{n}" for n in MULTIHOP_QA_HORIZONS)
