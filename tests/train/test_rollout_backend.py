"""The learner's rollout backend: config checks, the "auto" choice, and the vLLM weight-sync wiring.

vLLM cannot be installed on the development machines (CPU only), so the wiring is tested against
:class:`StandInLLM`, a stand-in for ``vllm.LLM`` with exactly the attribute path and methods
:class:`VLLMRolloutEngine` uses. The real engine is exercised only by the ``gpu`` test at the end,
which runs where CUDA and vllm exist (it was never run: no such machine was available).
"""

from __future__ import annotations

import importlib.util
import math
import sys
import types
from types import SimpleNamespace

import pytest
import torch
from mem1_agent import cli
from mem1_agent.policies.base import TokenCodec
from mem1_agent.policies.hf import TransformersPolicy
from mem1_agent.policies.vllm_backend import (
    MODEL_PATHS,
    VLLMRolloutEngine,
    _to_generation,
)
from mem1_agent.records import FinishReason
from mem1_agent.train import learner
from mem1_agent.train.learner import (
    LearnerConfig,
    make_rollout_engine,
    resolve_rollout_backend,
)
from mem1_agent.train.ppo import PPOConfig
from word_toys import WordBandit, make_word_model


@pytest.fixture
def no_vllm(monkeypatch):
    """``import vllm`` fails, as it does on the CPU machines (and now also where vllm is installed)."""
    monkeypatch.setitem(sys.modules, "vllm", None)


@pytest.fixture
def fake_vllm(monkeypatch):
    """``import vllm`` succeeds (an empty module): only for checks that never start an engine."""
    monkeypatch.setitem(sys.modules, "vllm", types.ModuleType("vllm"))


# --- (a) config checks -----------------------------------------------------------------------------


def test_config_rejects_unknown_backend_and_bad_memory_share():
    with pytest.raises(ValueError, match="rollout_backend must be one of"):
        LearnerConfig(rollout_backend="sglang")
    with pytest.raises(ValueError, match=r"vllm_gpu_memory_utilization must be in \(0, 1\]"):
        LearnerConfig(rollout_backend="transformers", vllm_gpu_memory_utilization=0.0)
    with pytest.raises(ValueError, match="--rollout-backend transformers"):
        LearnerConfig(rollout_backend="vllm", device="cpu")


def test_vllm_requested_but_missing_names_the_fix(no_vllm):
    with pytest.raises(RuntimeError) as err:
        LearnerConfig(rollout_backend="vllm", device="cuda")
    message = str(err.value)
    assert "import vllm" in message and "pip install vllm" in message and "--rollout-backend transformers" in message


def test_cli_fails_on_missing_vllm_before_loading_anything(no_vllm, tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["train", "--model", str(tmp_path / "nowhere"), "--out", str(out), "--rollout-backend", "vllm"])
    stderr = capsys.readouterr().err
    assert code == 2 and "pip install vllm" in stderr
    assert "make-tiny" not in stderr  # the config failed before the (missing) model was looked for
    assert not out.exists() and not (tmp_path / "run-vllm").exists()


# --- (b) the "auto" choice -------------------------------------------------------------------------


def test_auto_is_transformers_on_cpu_even_with_vllm_importable(fake_vllm):
    assert resolve_rollout_backend("auto", torch.device("cpu")) == "transformers"
    assert resolve_rollout_backend("transformers", torch.device("cuda")) == "transformers"


def test_auto_on_cuda_depends_on_vllm(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    assert resolve_rollout_backend("auto", torch.device("cuda")) == "transformers"
    monkeypatch.setitem(sys.modules, "vllm", types.ModuleType("vllm"))
    assert resolve_rollout_backend("auto", torch.device("cuda")) == "vllm"


def test_auto_on_cpu_builds_no_engine(word_codec):
    config = LearnerConfig(device="cpu")
    assert config.rollout_backend == "auto"
    assert make_rollout_engine(make_word_model(word_codec), word_codec, config, torch.device("cpu")) is None


# --- (c) weight sync against a stand-in engine ------------------------------------------------------


class StandInModel:
    """Stand-in for the engine's ``nn.Module``: ``load_weights(weights=iterable of (name, tensor))`` copies
    each tensor into a module of its own (vLLM copies into its fused parameters)."""

    def __init__(self, module: torch.nn.Module, events: list[str]) -> None:
        self.module, self.events, self.received = module, events, {}

    def load_weights(self, weights):
        for name, tensor in weights:
            self.received[name] = tensor.detach().clone()
        self.module.load_state_dict(self.received, strict=True)
        self.events.append("load")
        return set(self.received)


class StandInLLM:
    """Stand-in for an in-process ``vllm.LLM`` (V1 engine, ``VLLM_ENABLE_V1_MULTIPROCESSING=0``): the model
    at ``llm_engine.model_executor.driver_worker.worker.model_runner.model`` and ``reset_prefix_cache()``."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.events: list[str] = []
        self.model = StandInModel(module, self.events)
        worker = SimpleNamespace(model_runner=SimpleNamespace(model=self.model))
        self.llm_engine = SimpleNamespace(model_executor=SimpleNamespace(driver_worker=SimpleNamespace(worker=worker)),
                                          model_config=SimpleNamespace(max_model_len=64))

    def reset_prefix_cache(self) -> bool:
        self.events.append("reset")
        return True


def one_step(model: torch.nn.Module) -> None:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    ids = torch.tensor([[2, 3, 4, 3, 5]])
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    model.eval()


def test_stand_in_matches_the_path_the_engine_looks_up():
    assert MODEL_PATHS[0] == "llm_engine.model_executor.driver_worker.worker.model_runner.model"


def test_sync_weights_sends_every_tensor_then_resets_the_prefix_cache(word_codec):
    learner_model, engine_copy = make_word_model(word_codec, seed=0), make_word_model(word_codec, seed=1)
    llm = StandInLLM(engine_copy)
    engine = VLLMRolloutEngine.attach(llm, word_codec, version="stand-in")

    assert engine.sync_weights(learner_model) == len(learner_model.state_dict())
    before = {name: tensor.clone() for name, tensor in learner_model.state_dict().items()}
    assert llm.model.received.keys() == before.keys()
    assert all(torch.equal(llm.model.received[name], before[name]) for name in before)
    assert llm.events == ["load", "reset"]

    one_step(learner_model)
    engine.sync_weights(learner_model)
    after = learner_model.state_dict()
    assert all(torch.equal(llm.model.received[name], after[name]) for name in after)
    changed = [name for name in after if not torch.equal(after[name], before[name])]
    assert "model.layers.0.self_attn.q_proj.weight" in changed and len(changed) >= len(after) // 2
    assert all(torch.equal(a, b) for a, b in zip(engine_copy.state_dict().values(), after.values()))
    assert llm.events == ["load", "reset", "load", "reset"]


def test_sync_through_collective_rpc_when_the_engine_runs_in_another_process(word_codec):
    """A multi-process V1 engine has no ``llm_engine.model_executor``: the load runs in the worker."""
    module = make_word_model(word_codec, seed=1)
    events: list[str] = []
    worker = SimpleNamespace(model_runner=SimpleNamespace(model=StandInModel(module, events)))

    class MultiProcessLLM:
        llm_engine = SimpleNamespace(model_config=SimpleNamespace(max_model_len=64))

        def collective_rpc(self, method, timeout=None, args=(), kwargs=None):
            return [method(worker, *args, **(kwargs or {}))]

        def reset_prefix_cache(self):
            events.append("reset")
            return True

    learner_model = make_word_model(word_codec, seed=0)
    VLLMRolloutEngine.attach(MultiProcessLLM(), word_codec).sync_weights(learner_model)
    assert events == ["load", "reset"]
    assert all(t.device.type == "cpu" for t in worker.model_runner.model.received.values())
    assert all(torch.equal(a, b) for a, b in zip(module.state_dict().values(), learner_model.state_dict().values()))


def test_unknown_engine_shape_names_the_vllm_version(word_codec):
    with pytest.raises(RuntimeError, match=r"vLLM 0\.0\.test: no known way to load weights"):
        VLLMRolloutEngine.attach(SimpleNamespace(llm_engine=SimpleNamespace()), word_codec, version="0.0.test")


def test_refused_prefix_cache_reset_is_an_error(word_codec):
    llm = StandInLLM(make_word_model(word_codec, seed=1))
    llm.reset_prefix_cache = lambda: False
    with pytest.raises(RuntimeError, match="prefix cache"):
        VLLMRolloutEngine.attach(llm, word_codec).sync_weights(make_word_model(word_codec))


def test_vllm_outputs_become_the_same_generation_records(word_codec):
    """ids as sampled, one log-prob per id, finish reasons as the transformers backend names them."""

    def completion(ids, reason):
        steps = [{tok: SimpleNamespace(logprob=-0.5 - i)} for i, tok in enumerate(ids)]
        return SimpleNamespace(token_ids=ids, logprobs=steps, finish_reason=reason)

    eos = next(iter(word_codec.eos_ids))
    cases = {FinishReason.LENGTH: completion([2, 3, 4], "length"), FinishReason.EOS: completion([3, eos], "stop"),
             FinishReason.STOP: completion([2, 3], "stop")}
    for finish, out in cases.items():
        generation = _to_generation(out, word_codec)
        assert generation.finish is finish and generation.ids_as_sampled
        assert generation.token_ids == tuple(out.token_ids)
        assert generation.logprobs == tuple(-0.5 - i for i in range(len(out.token_ids)))
    assert _to_generation(completion([2, 3], "stop"), word_codec).text == "say yes"


class StandInEngine(VLLMRolloutEngine):
    """The real sync path into a stand-in engine whose copy of the model samples with the transformers
    policy (vLLM's sampler cannot run here). Records, at every sync, whether the copy equals the learner."""

    def __init__(self, learner_model: torch.nn.Module, codec: TokenCodec) -> None:
        self.copy = make_word_model(codec, seed=1)
        self._tmp = None
        self._attach(StandInLLM(self.copy), codec, "stand-in")
        self.synced: list[dict[str, torch.Tensor]] = []
        self.closed = False

    def sync_weights(self, model):
        count = super().sync_weights(model)
        assert all(torch.equal(a, b) for a, b in zip(self.copy.state_dict().values(), model.state_dict().values()))
        self.synced.append({name: tensor.clone() for name, tensor in model.state_dict().items()})
        return count

    def policy(self, sampling):
        return TransformersPolicy.from_model(self.copy, self.codec, sampling, name="vllm:live")

    def close(self):
        self.closed = True


def test_train_syncs_the_engine_before_every_collection(word_codec, monkeypatch):
    model = make_word_model(word_codec)
    engines: list[StandInEngine] = []

    def make_engine(model, codec, config, device):
        engines.append(StandInEngine(model, codec))
        return engines[-1]

    monkeypatch.setattr(learner, "make_rollout_engine", make_engine)
    ppo = PPOConfig(lr=3e-3, warmup_steps=0, mini_batch_size=8, micro_batch_size=4)
    config = LearnerConfig(env_id="say-yes", iterations=2, tasks_per_iteration=8, concurrency=8, max_new_tokens=4,
                           device="cpu", tensorboard=False, ppo=ppo)
    history = learner.train(model, word_codec, config, make_env=WordBandit)

    [engine] = engines
    assert len(history) == 2 and len(engine.synced) == 2 and engine.closed
    first, second = engine.synced
    assert any(not torch.equal(first[name], second[name]) for name in first)  # the update reached the engine


# --- (d) the real engine (GPU + vllm only) ----------------------------------------------------------


def learner_logprobs(model: torch.nn.Module, trajectory, device) -> list[list[float]]:
    """log p(sampled token | exact context) under the learner, in fp32, one list per turn."""
    out = []
    for turn in trajectory.turns:
        context = list(trajectory.context_ids(turn.index))
        ids = torch.tensor([context + list(turn.generated_ids)], device=device)  # (1, T)
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, len(context) - 1 : -1].float()  # (G, V)
        picked = torch.log_softmax(logits, -1).gather(1, ids[0, len(context) :, None])[:, 0]  # (G,)
        out.append(picked.tolist())
    return out


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec("vllm") is None,
                    reason="needs a CUDA GPU and vllm")
def test_one_iteration_with_vllm_rollouts_on_gpu(tmp_path, monkeypatch):
    from mem1_agent.tiny import TinyConfig, load_tokenizer, make_tiny
    from transformers import AutoModelForCausalLM

    # head dim 64: vLLM's attention kernels support it (the default tiny model's 16 may not be).
    folder = make_tiny(tmp_path / "tiny", TinyConfig(hidden_size=128, intermediate_size=256, num_heads=2,
                                                     num_kv_heads=1, max_positions=4096))
    model = AutoModelForCausalLM.from_pretrained(folder)
    codec = TokenCodec(load_tokenizer(folder), name="tiny")
    seen = []
    real_collect = learner.collect

    def spy(state, *args, **kwargs):
        trajectories = real_collect(state, *args, **kwargs)
        device = next(state.model.parameters()).device
        seen.append((trajectories, [learner_logprobs(state.model, t, device) for t in trajectories]))
        return trajectories

    monkeypatch.setattr(learner, "collect", spy)
    ppo = PPOConfig(ent_coef=0.01, lr=1e-3, mini_batch_size=4, micro_batch_size=2)
    config = LearnerConfig(env_id="MEM1-MultiHopQA-1", iterations=1, tasks_per_iteration=2, concurrency=2,
                           max_new_tokens=8, device="cuda", out=tmp_path / "run", tensorboard=False,
                           rollout_backend="vllm", vllm_engine_kwargs={"enforce_eager": True, "max_model_len": 4096},
                           ppo=ppo, env_kwargs={"max_turns": 2})
    history = learner.train(model, codec, config)

    assert math.isfinite(history[0]["policy_loss"]) and (tmp_path / "run" / "trainer_state.json").is_file()
    [(trajectories, recomputed)] = seen
    diffs = []
    for trajectory, per_turn in zip(trajectories, recomputed):
        assert trajectory.policy == "vllm:live" and trajectory.tokenizer == "tiny" and trajectory.turns
        for turn, learner_lp in zip(trajectory.turns, per_turn):
            assert turn.ids_as_sampled and turn.finish in (FinishReason.EOS, FinishReason.STOP, FinishReason.LENGTH)
            assert len(turn.logprobs) == len(turn.generated_ids) == len(learner_lp) > 0
            assert all(lp <= 0 and math.isfinite(lp) for lp in turn.logprobs)
            diffs += [abs(a - b) for a, b in zip(turn.logprobs, learner_lp)]
    # bf16 engine vs fp32 learner: loose agreement, per token and on average.
    assert max(diffs) < 0.25 and sum(diffs) / len(diffs) < 0.05, (max(diffs), sum(diffs) / len(diffs))
