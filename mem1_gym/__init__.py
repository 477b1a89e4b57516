"""mem1-gym: Gymnasium environments for long-horizon language agents with verifiable rewards.

``import mem1_gym`` registers every environment id (Gymnasium 1.x has no plugin discovery);
``gym.make("mem1_gym:MEM1-MultiHopQA-16")`` works without the import too. Registration uses
string entry points, so nothing heavy is imported here.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

__version__ = "0.1.0"

MULTIHOP_QA_HORIZONS = (1, 2, 3, 4, 6, 8, 16)

# (id, entry point, kwargs, nondeterministic[, vector entry point]): one block per env family.
_SPECS: list[tuple] = []

# --- MultiHopQA (local index) ---
_SPECS += [
    (f"MEM1-MultiHopQA-{n}", "mem1_gym.envs.multihop_qa:MultiHopQAEnv", {"n_questions": n}, False,
     "mem1_gym.envs.multihop_qa_vector:MultiHopQAVectorEnv")  # batches the envs' searches (issue 7)
    for n in MULTIHOP_QA_HORIZONS
]

# --- WebShop ---
_SPECS += [
    ("MEM1-WebShop", "mem1_gym.webshop.env_browser:WebShopEnv", {}, False),
    ("MEM1-WebShop-Text", "mem1_gym.webshop.env_text:WebShopTextEnv", {}, False),
]

# --- WebQA ---
# Deterministic as registered: the default provider is the local mini-web. A live provider
# (search_provider="serper" or "brave") makes that instance's spec nondeterministic.
WEB_QA_HORIZONS = (1, 2, 4, 8, 16)
_SPECS += [
    (f"MEM1-WebQA-{n}", "mem1_gym.envs.web_qa:WebQAEnv", {"n_questions": n}, False) for n in WEB_QA_HORIZONS
]

# --- Remote: any of the above served by `mem1-gym serve-env` (url=..., env_id=... kwargs) ---
_SPECS += [("MEM1-Remote", "mem1_gym.remote.client:RemoteEnv", {}, False)]


def _register_all() -> None:
    for env_id, entry_point, kwargs, nondeterministic, *vector_entry_point in _SPECS:
        if env_id not in registry:
            register(id=env_id, entry_point=entry_point, kwargs=kwargs, nondeterministic=nondeterministic,
                     vector_entry_point=vector_entry_point[0] if vector_entry_point else None)


_register_all()

ENV_IDS = tuple(spec[0] for spec in _SPECS)
