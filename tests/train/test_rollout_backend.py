"""The learner's rollout backend: config checks, the "auto" choice, and the vLLM weight-sync wiring.

vLLM cannot be installed on the development machines (CPU only), so the wiring is tested against
:class:`~vllm_worker.StandInLLM`, a stand-in for ``vllm.LLM`` with exactly the attribute path and
methods :class:`VLLMRolloutEngine` uses, in one process and in a 2-rank FSDP2 job (vllm_worker.py).
The real engine is exercised only by the ``gpu`` test at the end, which runs where CUDA and vllm
exist (it was never run: no such machine was available).
"""

from __future__ import annotations

import importlib.util
import math
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mem1_agent import cli
from mem1_agent.policies.base import TokenCodec
from mem1_agent.policies.hf import cache_argument
from mem1_agent.policies.vllm_backend import (
    MODEL_PATHS,
    VLLMRolloutEngine,
    _to_generation,
    streamed_weights,
)
from mem1_agent.records import FinishReason
from mem1_agent.train import learner
from mem1_agent.train.learner import (
    LearnerConfig,
    make_rollout_engine,
    resolve_rollout_backend,
)
from mem1_agent.train.ppo import PPOConfig
from test_distributed import errors, torchrun
from vllm_worker import StandInEngine, StandInLLM, StandInModel
from word_toys import WordBandit, make_word_codec, make_word_model


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


def one_step(model: torch.nn.Module) -> None:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    ids = torch.tensor([[2, 3, 4, 3, 5]])
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    model.eval()


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_stand_in_matches_the_path_the_engine_looks_up():
    assert MODEL_PATHS[0] == "llm_engine.model_executor.driver_worker.worker.model_runner.model"


def test_sync_streams_every_parameter_once_one_tensor_at_a_time_then_resets_the_prefix_cache(word_codec):
    learner_model, engine_copy = make_word_model(word_codec, seed=0), make_word_model(word_codec, seed=1)
    llm = StandInLLM(engine_copy)  # fails a call while a tensor of an earlier call is still alive
    engine = VLLMRolloutEngine.attach(llm, word_codec, version="stand-in")
    names = [name for name, _ in learner_model.named_parameters()]  # the tied lm_head once, as vLLM wants

    assert engine.sync_weights(learner_model) == len(names)
    assert [[name for name, _, _ in call] for call in llm.model.calls] == [[name] for name in names]
    assert llm.events == ["load"] * len(names) + ["reset"]
    assert same_weights(engine_copy, learner_model)

    before = {name: tensor.clone() for name, tensor in learner_model.state_dict().items()}
    one_step(learner_model)
    engine.sync_weights(learner_model)
    assert same_weights(engine_copy, learner_model)
    changed = [name for name, tensor in learner_model.state_dict().items() if not torch.equal(tensor, before[name])]
    assert "model.layers.0.self_attn.q_proj.weight" in changed and len(changed) >= len(before) // 2
    assert llm.events[-1] == "reset" and llm.events.count("reset") == 2


def test_sync_through_collective_rpc_when_the_engine_runs_in_another_process(word_codec):
    """A multi-process V1 engine has no ``llm_engine.model_executor``: each tensor is loaded in the worker."""
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
    count = VLLMRolloutEngine.attach(MultiProcessLLM(), word_codec).sync_weights(learner_model)
    assert events == ["load"] * count + ["reset"]
    assert all(len(call) == 1 and call[0][2] == "cpu" for call in worker.model_runner.model.calls)
    assert same_weights(module, learner_model)


def test_streamed_names_drop_wrapper_prefixes_and_lora_is_merged(word_codec):
    """``torch.compile``'s ``_orig_mod.`` goes; a peft LoRA model streams its merged weights under the base names,
    equal to peft's own ``merge_and_unload`` (the adapters themselves are never sent)."""
    from peft import LoraConfig, get_peft_model

    plain = make_word_model(word_codec, seed=0)
    names = [name for name, _ in plain.named_parameters()]
    assert [name for name, _ in streamed_weights(torch.compile(plain))] == names

    lora = get_peft_model(make_word_model(word_codec, seed=0), LoraConfig(r=2, lora_alpha=4, target_modules=[
        "q_proj", "v_proj", "down_proj"], lora_dropout=0.0))
    with torch.no_grad():
        for name, param in lora.named_parameters():
            if "lora_B" in name:
                param.normal_()  # peft starts B at 0: a merge would change nothing
    engine_copy = make_word_model(word_codec, seed=1)
    llm = StandInLLM(engine_copy)
    assert VLLMRolloutEngine.attach(llm, word_codec).sync_weights(lora) == len(names)
    assert [call[0][0] for call in llm.model.calls] == names
    merged = lora.merge_and_unload()
    for (name, got), want in zip(engine_copy.named_parameters(), merged.parameters()):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6, msg=name)
    assert not torch.equal(engine_copy.model.layers[0].self_attn.q_proj.weight,
                           plain.model.layers[0].self_attn.q_proj.weight)  # the adapters reached the engine


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


@pytest.fixture
def recording_vllm(monkeypatch):
    """``import vllm`` gives a module whose ``LLM`` is a :class:`StandInLLM` recording how it was built."""
    built: list[dict] = []

    class RecordingLLM(StandInLLM):
        def __init__(self, model, **kwargs):
            built.append({"model": model, "files": sorted(p.name for p in Path(model).iterdir()), **kwargs})
            super().__init__(make_word_model(make_word_codec(), seed=1))

    module = types.ModuleType("vllm")
    module.LLM, module.__version__ = RecordingLLM, "stand-in"
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # restored after the test (the engine sets it)
    return built


def test_each_rank_starts_its_own_engine_without_weights(word_codec, recording_vllm, monkeypatch):
    """Rank 1 of 2: tensor_parallel_size 1 on vLLM's external launcher (the rank's GPU: LOCAL_RANK), its own seed,
    config and tokenizer only on disk (weights come with the first sync); sleep mode frees the GPU between
    collections and wakes the engine for the sync."""
    monkeypatch.setattr(learner.distributed, "rank", lambda: 1)
    monkeypatch.setattr(learner.distributed, "world_size", lambda: 2)
    config = LearnerConfig(rollout_backend="vllm", device="cuda", seed=5,
                           vllm_engine_kwargs={"enable_sleep_mode": True})
    model = make_word_model(word_codec)
    engine = make_rollout_engine(model, word_codec, config, torch.device("cuda"))

    [kwargs] = recording_vllm
    assert kwargs["tensor_parallel_size"] == 1 and kwargs["distributed_executor_backend"] == "external_launcher"
    assert kwargs["load_format"] == "dummy" and kwargs["dtype"] == "bfloat16" and kwargs["enable_prefix_caching"]
    assert kwargs["seed"] == 5 + 1_000_003 and kwargs["gpu_memory_utilization"] == config.vllm_gpu_memory_utilization
    assert "config.json" in kwargs["files"] and not [f for f in kwargs["files"] if f.endswith((".safetensors", ".bin"))]
    assert engine.llm.events == ["sleep2"]
    count = engine.sync_weights(model)
    engine.sleep()
    assert engine.llm.events == ["sleep2", "wake:weights"] + ["load"] * count + ["wake:kv_cache", "reset", "sleep2"]
    engine.close()
    assert not Path(kwargs["model"]).exists()

    with pytest.raises(ValueError, match="tensor_parallel_size must be 1"):
        VLLMRolloutEngine(model, word_codec, tensor_parallel_size=2)
    VLLMRolloutEngine(model, word_codec).close()  # one process: vLLM's own executor
    assert "distributed_executor_backend" not in recording_vllm[-1]


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
    assert len(history) == 2 and len(engine.synced) == 2 and engine.closed and all(engine.matched)
    first, second = engine.synced
    assert any(not torch.equal(first[name], second[name]) for name in first)  # the update reached the engine


@pytest.mark.parametrize("lora_rank", [0, 2])
def test_two_ranks_stream_weights_into_their_own_engines(tmp_path, word_codec, lora_rank):
    """2 gloo ranks, FSDP2: each rank's engine gets every parameter once, whole (unsharded shape), one tensor per
    call with no earlier one alive, equal to the single-process model before the first update and to the
    learner's whole weights at every sync (with LoRA: merged, as the checkpoint merges them); the learner stays
    sharded while it syncs and samples (nothing gathers the whole model for vLLM rollouts); each rank builds
    envs for its own episodes only."""
    done = torchrun(str(tmp_path), str(lora_rank), worker=Path(__file__).with_name("vllm_worker.py"))
    assert done.returncode == 0, errors(done)[-6000:]
    single = make_word_model(word_codec)
    shapes = [(name, tuple(p.shape)) for name, p in single.named_parameters()]
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert [[(name, shape) for name, shape, _ in call] for call in got["calls"]] == [[s] for s in shapes] * 2
        assert got["events"] == (["load"] * len(shapes) + ["reset"]) * 2 and got["closed"]
        assert all(got["sharded"]) and len(got["sharded"]) >= 4, got["sharded"]  # 2 syncs + >= 1 sampling call each
        assert all(got["matched"]) and len(got["matched"]) == 2
        for name, param in single.named_parameters():
            assert torch.equal(got["first_sync"][name], param.detach()), name
        assert any(not torch.equal(got["first_sync"][n], got["last_sync"][n]) for n in got["first_sync"])
        assert got["envs"] == 2  # 4 tasks per iteration over 2 ranks, groups of 1 (concurrency 8)


def test_transformers_rollouts_batch_all_episodes_with_the_kv_cache(word_codec):
    """One prefill of all 6 episodes (one row each), then one-token steps that pass the KV cache back in."""
    config = LearnerConfig(env_id="word-bandit", tasks_per_iteration=6, concurrency=8, max_new_tokens=4,
                           device="cpu", rollout_backend="transformers")
    model = make_word_model(word_codec)
    state = learner.make_state(model, config, torch.device("cpu"))
    cache = cache_argument(model)
    calls = []
    model.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append((tuple(kwargs["input_ids"].shape), kwargs.get(cache) is not None)),
        with_kwargs=True)
    trajectories = learner.collect(state, word_codec, [WordBandit() for _ in range(6)], config, torch.device("cpu"))

    assert len(trajectories) == 6 and 1 <= len(calls) <= config.max_new_tokens
    (rows, width), had_cache = calls[0]
    assert rows == 6 and width == len(word_codec.encode("say yes")) and not had_cache
    assert all(call == ((6, 1), True) for call in calls[1:])


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

    assert math.isfinite(history[0]["train/policy_loss"]) and (tmp_path / "run" / "trainer_state.json").is_file()
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
