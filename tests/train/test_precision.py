"""Training dtypes and gradient checkpointing (issue 19, req. 2) on CPU: bf16 matmuls run there, slowly but exactly
as the module asks, so the dtype each option stores, computes and reduces in is checked here, not only on a GPU."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mem1_agent.train.layouts import TurnTokens, collate, prefix_cache_sample, stitched_sample
from mem1_agent.train.learner import LearnerConfig, make_state, train
from mem1_agent.train.ppo import PPOConfig, forward

CPU = torch.device("cpu")
WORKER = Path(__file__).with_name("dist_precision_worker.py")
TURNS = [TurnTokens([2, 3], [3, 4]), TurnTokens([2, 3, 4], [5, 6, 3]), TurnTokens([2, 3, 6], [7, 3, 3])]


def precision_config(**kwargs) -> LearnerConfig:
    # the entropy bonus and the KL term move the weights even when every reward is 0
    ppo = PPOConfig(lr=1e-2, warmup_steps=0, epochs=1, mini_batch_size=4, micro_batch_size=2, ent_coef=0.01,
                    kl_coef=0.01)
    return LearnerConfig(env_id="word-bandit", tasks_per_iteration=4, concurrency=4, max_new_tokens=4, device="cpu",
                         tensorboard=False, ppo=ppo, **kwargs)


def watch_dtypes(model: torch.nn.Module) -> list[torch.dtype]:
    """The output dtype of every call of the first decoder layer's MLP (a bf16 matmul gives bf16)."""
    seen: list[torch.dtype] = []
    model.model.layers[0].mlp.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    return seen


def loss_of(state, batch) -> torch.Tensor:
    out = forward(state.model, batch, state.value_head)
    return out.logprobs.sum() + out.entropy.sum() + out.values.sum()


def test_bf16_mixed_keeps_fp32_masters_and_gradients_and_computes_in_bf16(word_codec, word_model):
    from torch.distributed.tensor import DTensor

    model = word_model(word_codec)
    seen = watch_dtypes(model)
    state = make_state(model, precision_config(precision="bf16-mixed"), CPU)
    loss_of(state, collate([prefix_cache_sample(TURNS)])).backward()
    assert seen and set(seen) == {torch.bfloat16}
    trained = [p for group in state.optimizer.param_groups for p in group["params"]]
    assert all(isinstance(p, DTensor) and p.dtype == torch.float32 for p in trained)  # FSDP2's fp32 master shards
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in trained)  # reduced in fp32
    assert all(p.dtype == torch.bfloat16 for p in state.reference.parameters())  # frozen: no master copy


def test_bf16_mixed_iteration_checkpoints_fp32_weights_and_resumes(tmp_path, word_codec, word_bandit, word_model):
    from torch.distributed.tensor import DTensor
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    model = word_model(word_codec)
    seen = watch_dtypes(model)
    history = train(model, word_codec, precision_config(precision="bf16-mixed", iterations=1, out=out),
                    make_env=word_bandit)
    assert set(seen) == {torch.bfloat16} and torch.isfinite(torch.tensor(history[0]["train/loss"]))
    whole = {name: p.full_tensor() for name, p in model.named_parameters() if isinstance(p, DTensor)}
    assert whole and all(p.dtype == torch.float32 for p in whole.values())
    loaded = dict(AutoModelForCausalLM.from_pretrained(out).named_parameters())
    assert all(torch.equal(loaded[name], p) for name, p in whole.items())  # the fp32 masters, gathered
    assert (out / "sharded").is_dir()  # resumable state through DCP, as at any world size
    history = train(word_model(word_codec), word_codec, precision_config(precision="bf16-mixed", iterations=2,
                                                                         out=out), make_env=word_bandit)
    assert len(history) == 1 and json.loads((out / "trainer_state.json").read_text())["iteration"] == 2


def test_bf16_stores_and_computes_in_bf16_and_trains(word_codec, word_bandit, word_model):
    model = word_model(word_codec)
    before = [p.detach().clone() for p in model.parameters()]
    seen = watch_dtypes(model)
    history = train(model, word_codec, precision_config(precision="bf16", iterations=1), make_env=word_bandit)
    assert set(seen) == {torch.bfloat16} and all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert torch.isfinite(torch.tensor(history[0]["train/loss"]))
    assert any(not torch.equal(a.to(torch.bfloat16), b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("layout", ["stitched", "prefix-cache"])  # prefix-cache: pass 2 reads pass 1's K/V cache
def test_gradient_checkpointing_recomputes_layers_and_gives_the_same_gradients(layout, monkeypatch, word_codec,
                                                                               word_model):
    from transformers.models.qwen2 import modeling_qwen2

    calls = []  # every run of a decoder layer's MLP (a recompute too, which module hooks do not see)
    mlp = modeling_qwen2.Qwen2MLP.forward
    monkeypatch.setattr(modeling_qwen2.Qwen2MLP, "forward", lambda self, x: calls.append(1) or mlp(self, x))
    batch = collate([stitched_sample(TURNS) if layout == "stitched" else prefix_cache_sample(TURNS)])
    grads, runs = [], []
    for checkpointing in (False, True):
        config = precision_config(gradient_checkpointing=checkpointing, layout=layout)
        state = make_state(word_model(word_codec), config, CPU)
        state.model.train()  # checkpointing acts in training mode only
        calls.clear()
        loss_of(state, batch).backward()
        grads.append({name: p.grad for name, p in state.model.named_parameters()})
        runs.append(len(calls))
    assert runs[1] == 2 * runs[0]  # checkpointed: every layer call ran again in backward
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=0, atol=1e-6, msg=name)


def test_gradient_checkpointing_leaves_rollouts_and_the_reference_alone(word_codec, word_model):
    config = precision_config(gradient_checkpointing=True)
    state = make_state(word_model(word_codec), config, CPU)
    layer, copied = state.model.model.layers[0], state.reference.model.layers[0]
    assert "forward" in vars(layer) and "forward" not in vars(copied)  # the reference never runs backward
    batch = collate([prefix_cache_sample(TURNS)])
    with torch.no_grad():  # no backward to replay: the plain forward, cache kept (old log-probs, rollouts)
        policy, reference = forward(state.model.train(), batch), forward(state.reference, batch)
    torch.testing.assert_close(policy.logprobs, reference.logprobs, rtol=0, atol=1e-6)


def test_two_ranks_train_bf16_mixed_with_fp32_masters(tmp_path):
    """FSDP2's mixed precision over 2 gloo ranks: one iteration (policy, value head and a bf16 reference copy
    sharded alike), bf16 compute, fp32 shards, and a checkpoint that loads."""
    from transformers import AutoModelForCausalLM

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(port), str(WORKER), str(tmp_path / "run"), str(tmp_path / "report.json")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=150, env=env)
    assert done.returncode == 0, done.stderr[-6000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["computed"] == ["torch.bfloat16"] and report["stored"] == ["torch.float32"], report
    assert report["reference"] == ["torch.bfloat16"] and report["sharded"] and report["finite"], report
    AutoModelForCausalLM.from_pretrained(tmp_path / "run")


def test_additive_mask_follows_autocast_and_stays_finite():
    """Under autocast the layouts' fp32 mask goes to attention in the autocast dtype, cast once (issue 25's
    profile); masked entries become that dtype's lowest finite value (fp32's lowest would round to -inf in
    bf16); without autocast the mask is passed through untouched."""
    from mem1_agent.train.ppo import additive_mask

    model = torch.nn.Linear(2, 2)
    mask = torch.zeros(1, 1, 3, 3).masked_fill_(~torch.ones(3, 3, dtype=torch.bool).tril(), torch.finfo(torch.float32).min)
    assert additive_mask(model, mask) is mask
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = additive_mask(model, mask)
    assert low.dtype == torch.bfloat16
    assert torch.isfinite(low).all()
    assert torch.equal(low == 0, mask == 0)
    assert (low[mask < 0] == torch.finfo(torch.bfloat16).min).all()
