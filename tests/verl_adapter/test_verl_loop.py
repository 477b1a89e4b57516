"""The verl agent loops driven by a stand-in server manager (token ids + log-probs), built the way
verl's ``AgentLoopWorker`` builds them: looked up by name in verl's registry, ``hydra.utils.instantiate``.

The model's turns are the scripted oracle's, recorded on a direct :class:`TextEpisode` run of the
same task; the loop must reproduce that run's reward and observations, token for token.
"""

from __future__ import annotations

import asyncio
import threading

import hydra
import pyarrow.parquet as pq
import pytest
from mem1_agent.tiny import counting_tokenizer
from omegaconf import OmegaConf
from verl.experimental.agent_loop.agent_loop import AgentLoopOutput, DictConfigWrap, ToolListWrap, _agent_loop_registry
from verl.utils.dataset.rl_dataset import RLHFDataset
from verl.workers.rollout.replica import TokenOutput

from mem1_gym.integrations import verl as adapter
from mem1_gym.integrations.tasks import TextEpisode, make_env, task_rows
from mem1_gym.oracle import ScriptedOracle

ENV_ID = "MEM1-MultiHopQA-2"
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# An agent loop YAML entry as docs/trainers/verl.md writes it; its env arguments cut the oracle's 4 turns to 3.
MEM1_ENTRY = OmegaConf.create({"name": "mem1_gym_mem1", "_target_": "mem1_gym.integrations.verl.Mem1GymMem1AgentLoop",
                               "env_kwargs": {"max_turns": 3}})


@pytest.fixture(scope="module")
def tokenizer():
    tok = counting_tokenizer()
    tok.chat_template = CHAT_TEMPLATE
    return tok


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def oracle_run(index: int, **env_kwargs) -> tuple[list[str], list[str], float]:
    """The oracle's turns on task ``index``, the observations (first one included) and the reward."""
    episode, oracle = TextEpisode(make_env(ENV_ID, "train", **env_kwargs)), ScriptedOracle()
    observation = episode.reset(index)
    oracle.reset(episode.env.unwrapped.task)
    texts = []
    while not episode.done:
        texts.append(oracle.act(observation, int(episode.info["turns_left"])))
        observation = episode.step(texts[-1])
    episode.close()
    return texts, episode.observations, episode.reward


class StandInServer:
    """verl's server manager seam: ``generate(request_id, prompt_ids=, sampling_params=) -> TokenOutput``;
    replays scripted texts as token ids (at most ``max_tokens``, as vLLM and SGLang) with made-up
    log-probs, and records every request."""

    def __init__(self, tokenizer, texts: list[str]) -> None:
        self.tokenizer, self.texts, self.calls = tokenizer, texts, []

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs) -> TokenOutput:
        self.calls.append({"request_id": request_id, "prompt_ids": list(prompt_ids), "params": dict(sampling_params),
                           "thread": threading.get_ident()})
        ids = encode(self.tokenizer, self.texts[min(len(self.calls), len(self.texts)) - 1])
        ids = ids[:sampling_params["max_tokens"]]
        return TokenOutput(token_ids=ids, log_probs=[-0.5 - i / 1000 for i in range(len(ids))])


def make_loop(name_or_config, server, tokenizer, prompt_length=2048, response_length=2048):
    """What verl's AgentLoopWorker._run_agent_loop does with a registered name (or a YAML entry)."""
    config = OmegaConf.create({"actor_rollout_ref": {"rollout": {"prompt_length": prompt_length,
                                                                 "response_length": response_length}},
                               "data": {}})
    entry = _agent_loop_registry[name_or_config] if isinstance(name_or_config, str) else name_or_config
    return hydra.utils.instantiate(
        config=entry, trainer_config=DictConfigWrap(config), server_manager=server, tokenizer=tokenizer,
        processor=None, hf_model_type=None, dataset_cls=RLHFDataset, data_config=DictConfigWrap(config.data),
        tools=ToolListWrap([]),
    )


def play(name_or_config, server, tokenizer, index: int, **lengths):
    """Build the loop inside a running event loop (as verl's worker does: the loop keeps a handle to
    it) and play task ``index`` with a row as verl's dataset gives it."""
    row = {**task_rows(ENV_ID, "train", limit=index + 1)[index], "raw_prompt": [], "agent_name": "mem1_gym"}

    async def go():
        loop = make_loop(name_or_config, server, tokenizer, **lengths)
        return await loop.run({"temperature": 1.0, "logprobs": True}, **row)

    return asyncio.run(go())


def test_loops_are_registered_by_name(tokenizer):
    assert _agent_loop_registry["mem1_gym"] == {"_target_": "mem1_gym.integrations.verl.Mem1GymAgentLoop"}
    assert _agent_loop_registry["mem1_gym_mem1"] == {"_target_": "mem1_gym.integrations.verl.Mem1GymMem1AgentLoop"}
    assert type(asyncio.run(asyncio.to_thread(make_loop, "mem1_gym", None, tokenizer))) is adapter.Mem1GymAgentLoop


def test_append_loop_masks_every_env_token_and_returns_the_env_reward(tokenizer):
    texts, observations, reward = oracle_run(0)
    assert reward > 0 and len(texts) >= 3  # the oracle answers: the loop must earn the same reward
    server = StandInServer(tokenizer, texts)
    out = play("mem1_gym", server, tokenizer, 0)

    assert isinstance(out, AgentLoopOutput) and out.reward_score == reward
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": observations[0]}], add_generation_prompt=True,
                                           tokenize=False)
    assert out.prompt_ids == encode(tokenizer, prompt)
    # action, observation, ..., action: the observation after the last action is not part of the response
    expected_ids, expected_mask = [], []
    for turn, text in enumerate(texts):
        obs = encode(tokenizer, observations[turn + 1]) if turn < len(texts) - 1 else []
        expected_ids += encode(tokenizer, text) + obs
        expected_mask += [1] * len(encode(tokenizer, text)) + [0] * len(obs)
    assert out.response_ids == expected_ids and out.response_mask == expected_mask
    assert len(out.response_ids) == len(out.response_mask) == len(out.response_logprobs)
    assert all(lp == 0.0 for lp, m in zip(out.response_logprobs, out.response_mask) if m == 0)
    assert all(lp < 0.0 for lp, m in zip(out.response_logprobs, out.response_mask) if m == 1)
    # every turn read everything before it, and asked for what is left of the response budget
    for turn, call in enumerate(server.calls):
        start = sum(len(encode(tokenizer, t)) for t in texts[:turn]) + sum(
            len(encode(tokenizer, o)) for o in observations[1:turn + 1])
        assert call["prompt_ids"] == out.prompt_ids + expected_ids[:start]
        assert call["params"]["max_tokens"] == 2048 - start and call["params"]["temperature"] == 1.0
        assert call["params"]["stop"] and call["request_id"] == server.calls[0]["request_id"]
    assert out.extra_fields["reward_extra_info"]["em"] == 2.0 and out.extra_fields["env_done"]
    # verl's own conversion puts the reward on the last response token
    assert out.as_dict()["rm_scores"][-1] == reward


def test_response_budget_ends_the_loop_without_reward(tokenizer):
    texts, _, _ = oracle_run(0)
    first = len(encode(tokenizer, texts[0]))
    for budget, sampled in ((first + 5, first), (first - 3, first - 3)):  # cut in the observation / in the action
        out = play("mem1_gym", StandInServer(tokenizer, texts), tokenizer, 0, response_length=budget)
        assert len(out.response_ids) == len(out.response_mask) == len(out.response_logprobs) == budget
        assert out.response_mask == [1] * sampled + [0] * (budget - sampled)
    assert out.reward_score == 0.0 and not out.extra_fields["env_done"]
    assert out.extra_fields["reward_extra_info"]["em"] == 0.0  # same keys as a finished episode


def test_env_steps_run_off_the_event_loop(tokenizer, monkeypatch):
    texts, _, _ = oracle_run(0)
    steps = []
    step = TextEpisode.step
    monkeypatch.setattr(TextEpisode, "step", lambda self, text: steps.append(threading.get_ident()) or step(self, text))
    server = StandInServer(tokenizer, texts)
    play("mem1_gym", server, tokenizer, 0)
    loop_thread = server.calls[0]["thread"]
    assert steps and all(thread != loop_thread for thread in steps)


def test_mem1_loop_emits_one_output_per_turn_with_the_trajectory_reward(tokenizer):
    texts, observations, reward = oracle_run(1, max_turns=3)
    assert len(texts) == 3 and reward > 0  # the oracle answers on its last turn
    server = StandInServer(tokenizer, texts)
    outs = play(MEM1_ENTRY, server, tokenizer, 1)

    assert isinstance(outs, list) and len(outs) == len(texts)
    prompt = outs[0].prompt_ids
    for turn, (out, text) in enumerate(zip(outs, texts)):
        # MEM1's context: the task prompt, the last action (the internal state in it) and the last observation
        context = prompt + (encode(tokenizer, texts[turn - 1]) + encode(tokenizer, observations[turn]) if turn else [])
        assert out.prompt_ids == context == server.calls[turn]["prompt_ids"]
        assert out.response_ids == encode(tokenizer, text) and out.response_mask == [1] * len(out.response_ids)
        assert len(out.response_logprobs) == len(out.response_ids)
        assert out.reward_score == reward and "reward_extra_info" in out.extra_fields


def test_write_dataset_is_read_by_verls_dataset(tmp_path, tokenizer):
    path = adapter.write_dataset(tmp_path / "train.parquet", ENV_ID, "train", limit=3)
    assert pq.read_table(path).num_rows == 3
    dataset = RLHFDataset(str(path), tokenizer, OmegaConf.create({"max_prompt_length": 4096,
                                                                   "cache_dir": str(tmp_path / "cache")}))
    row = dataset[2]
    first = TextEpisode(make_env(ENV_ID, "train"))
    assert row["raw_prompt"] == [{"role": "user", "content": first.reset(2)}]
    first.close()
    assert (row["env_id"], row["split"], row["task_index"], row["agent_name"]) == (ENV_ID, "train", 2, "mem1_gym")
    with pytest.raises(ValueError, match="agent_name must be"):
        adapter.write_dataset(tmp_path / "x.parquet", ENV_ID, agent_name="tool_agent")


def test_mem1_loop_stops_when_the_context_outgrows_the_prompt_length(tokenizer):
    texts, observations, _ = oracle_run(0)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": observations[0]}], add_generation_prompt=True,
                                           tokenize=False)
    room = len(encode(tokenizer, prompt)) + 1  # the task prompt fits, prompt + an action + an observation does not
    outs = play("mem1_gym_mem1", StandInServer(tokenizer, texts), tokenizer, 0, prompt_length=room)
    assert len(outs) == 1 and outs[0].reward_score == 0.0 and not outs[0].extra_fields["env_done"]


def test_verls_v1_worker_takes_the_mem1_loops_outputs(tokenizer, monkeypatch):
    """verl's V1 (TransferQueue) worker post-processes the list: one entry per turn, each scored."""
    from verl.trainer.ppo.v1 import agent_loop_tq

    texts, _, reward = oracle_run(1, max_turns=3)
    outs = play(MEM1_ENTRY, StandInServer(tokenizer, texts), tokenizer, 1)
    stored = {}

    async def kv_batch_put(keys, fields, tags, partition_id):
        stored.update(keys=keys, fields=fields, tags=tags)

    monkeypatch.setattr(agent_loop_tq.tq, "async_kv_batch_put", kv_batch_put)
    worker_cls = agent_loop_tq.AgentLoopWorkerTQ.__ray_actor_class__  # the class under ray.remote
    worker = worker_cls.__new__(worker_cls)  # only what _agent_loop_postprocess reads, no Ray actor
    worker.reward_loop_worker_handles, worker.distillation_enabled, worker.processor = None, False, None
    row = {**task_rows(ENV_ID, "train", limit=2)[1], "uid": "u", "session_id": 0, "global_steps": 1}
    asyncio.run(worker._agent_loop_postprocess(outs, False, **row))
    assert stored["keys"] == ["u_0_0", "u_0_1", "u_0_2"]
    assert [tag["response_len"] for tag in stored["tags"]] == [len(out.response_ids) for out in outs]
    assert all(out.reward_score == reward for out in outs)
