"""The CUDA paths (issue 19, requirement 8): run by `scripts/gpu_check.sh` on a GPU machine, skipped elsewhere.

Tolerances: bf16 keeps 8 bits of mantissa, so a log-prob computed under bf16 autocast differs from
the fp32 one by a few hundredths of a nat on average on a random-init model; the bounds below
(mean < 0.05, max < 0.5 nats per token) catch a wrong mask or wrong positions (errors of whole nats)
and not bf16 rounding.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

BF16_MEAN_NATS, BF16_MAX_NATS = 0.05, 0.5


def _random_trajectory(n_turns: int, vocab: int, seed: int):
    from mem1_agent.train.layouts import TurnTokens

    g = torch.Generator().manual_seed(seed)

    def draw(n: int) -> list[int]:
        return torch.randint(0, vocab, (n,), generator=g).tolist()

    prompt, last, turns = draw(120), [], []
    for _ in range(n_turns):
        generated = draw(20)
        turns.append(TurnTokens(prompt + last, generated))
        last = generated + draw(60)
    return turns


@pytest.mark.parametrize("layout", ["stitched", "prefix-cache"])
def test_bf16_layouts_match_fp32_per_turn(layout):
    from mem1_agent.train.device import autocast
    from mem1_agent.train.layouts import collate, per_turn_samples, prefix_cache_sample, stitched_sample
    from mem1_agent.train.ppo import token_logprobs
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096)
    device = torch.device("cuda")
    model = Qwen2ForCausalLM(config).to(device).eval()
    turns = _random_trajectory(8, config.vocab_size, seed=1)
    with torch.no_grad():
        reference = collate(per_turn_samples(turns))
        exact = token_logprobs(model, type(reference)(*(t.to(device) for t in reference)))
        exact = exact[reference.loss_mask.to(device) > 0]  # fp32, turn by turn
        sample = stitched_sample(turns) if layout == "stitched" else prefix_cache_sample(turns)
        batch = collate([sample])
        batch = type(batch)(*(t.to(device) for t in batch))
        with autocast(device):
            got = token_logprobs(model, batch)
        got = got[batch.loss_mask > 0].float()
    assert got.shape == exact.shape
    diff = (got - exact).abs()
    assert diff.mean() < BF16_MEAN_NATS and diff.max() < BF16_MAX_NATS, (float(diff.mean()), float(diff.max()))


@pytest.mark.parametrize("algo", ["rloo", "ppo"])
def test_one_iteration_on_cuda_changes_parameters(algo, tiny_model_dir, tmp_path):
    from mem1_agent.policies.base import TokenCodec
    from mem1_agent.tiny import load_tokenizer
    from mem1_agent.train.learner import LearnerConfig, train
    from mem1_agent.train.ppo import PPOConfig
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    codec = TokenCodec(load_tokenizer(tiny_model_dir), name="tiny")
    before = [p.detach().clone() for p in model.parameters()]
    # An untrained model earns reward 0: the entropy bonus and the KL term move the weights.
    ppo = PPOConfig(algo=algo, ent_coef=0.01, kl_coef=0.01, lr=1e-3, mini_batch_size=4, micro_batch_size=2)
    config = LearnerConfig(env_id="MEM1-MultiHopQA-1", iterations=1, tasks_per_iteration=2,
                           group_size=2 if algo == "rloo" else 1, concurrency=4, max_new_tokens=8, device="cuda",
                           rollout_backend="transformers", ppo=ppo, env_kwargs={"max_turns": 2},
                           out=tmp_path / "run", tensorboard=False)
    history = train(model, codec, config)
    assert all(math.isfinite(history[0][f"train/{k}"]) for k in ("policy_loss", "entropy", "approx_kl", "kl"))
    assert next(model.parameters()).device.type == "cuda"
    assert any(not torch.equal(a, b.cpu()) for a, b in zip(before, model.parameters()))


def test_checkpoint_round_trip_on_cuda(tiny_model_dir, tmp_path):
    from mem1_agent.policies.base import TokenCodec
    from mem1_agent.tiny import load_tokenizer
    from mem1_agent.train.layouts import collate, per_turn_samples
    from mem1_agent.train.learner import LearnerConfig, train
    from mem1_agent.train.ppo import PPOConfig, token_logprobs
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    codec = TokenCodec(load_tokenizer(tiny_model_dir), name="tiny")
    ppo = PPOConfig(algo="rloo", ent_coef=0.01, lr=1e-3, mini_batch_size=4, micro_batch_size=2)
    out = tmp_path / "run"
    config = LearnerConfig(env_id="MEM1-MultiHopQA-1", iterations=1, tasks_per_iteration=2, group_size=2,
                           concurrency=4, max_new_tokens=8, device="cuda", rollout_backend="transformers", ppo=ppo,
                           env_kwargs={"max_turns": 2}, out=out, tensorboard=False)
    train(model, codec, config)
    loaded = AutoModelForCausalLM.from_pretrained(out).to("cuda").eval()
    batch = collate(per_turn_samples(_random_trajectory(2, model.config.vocab_size, seed=3)))
    batch = type(batch)(*(t.to("cuda") for t in batch))
    with torch.no_grad():
        assert torch.equal(token_logprobs(model.eval(), batch), token_logprobs(loaded, batch))


def test_transformers_rollouts_sample_in_bf16_with_the_kv_cache_on_cuda(word_codec):
    """The learner's fp32 module samples under bf16 autocast (bf16 logits), all rows in one batch with the KV cache;
    its log-probs match an fp32 forward within the bf16 bounds above, and its weights stay fp32 and untouched."""
    from mem1_agent.policies.base import GenerationRequest, SamplingConfig
    from mem1_agent.policies.hf import HFConfig, TransformersPolicy, cache_argument
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    codec = word_codec
    config = Qwen2Config(vocab_size=len(codec.tokenizer), hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    model = Qwen2ForCausalLM(config).to("cuda").eval()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    seen = []
    hook = model.register_forward_hook(lambda module, args, kwargs, out: seen.append(
        (kwargs["input_ids"].shape[0], kwargs.get(cache_argument(module)) is not None, out.logits.dtype)),
        with_kwargs=True)
    contexts = [codec.encode("say yes " * (k + 1)) for k in range(4)]
    requests = [GenerationRequest(k, tuple(ids), "", (), 8, "", 1) for k, ids in enumerate(contexts)]
    policy = TransformersPolicy.from_model(model, codec, SamplingConfig(1.0, 1.0, 8, seed=0), HFConfig(max_batch=4))
    generations = policy.generate(requests)
    hook.remove()

    assert all(rows == 4 and dtype == torch.bfloat16 for rows, _, dtype in seen)
    assert not seen[0][1] and all(had_cache for _, had_cache, _ in seen[1:]) and len(seen) > 1
    assert all(p.dtype == torch.float32 and torch.equal(p, before[name]) for name, p in model.named_parameters())
    diffs = []
    for ids, generation in zip(contexts, generations):
        full = torch.tensor([list(ids) + list(generation.token_ids)], device="cuda")  # (1, T)
        with torch.no_grad():
            logits = model(input_ids=full).logits[0, len(ids) - 1 : -1].float()  # (G, V) fp32
        exact = torch.log_softmax(logits, -1).gather(1, full[0, len(ids):, None])[:, 0]  # (G,)
        diffs += (exact - torch.tensor(generation.logprobs, device="cuda")).abs().tolist()
    assert sum(diffs) / len(diffs) < BF16_MEAN_NATS and max(diffs) < BF16_MAX_NATS, diffs


def _tiny_run(tiny_model_dir, out, **memory):
    """The tiny MEM1 model, its codec and a one-iteration RLOO config on CUDA with the given memory options."""
    from mem1_agent.policies.base import TokenCodec
    from mem1_agent.tiny import load_tokenizer
    from mem1_agent.train.learner import LearnerConfig
    from mem1_agent.train.ppo import PPOConfig
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    codec = TokenCodec(load_tokenizer(tiny_model_dir), name="tiny")
    # An untrained model earns reward 0: the entropy bonus and the KL term move the weights.
    ppo = PPOConfig(algo="rloo", ent_coef=0.01, kl_coef=0.01, lr=1e-2, mini_batch_size=4, micro_batch_size=2)
    config = LearnerConfig(env_id="MEM1-MultiHopQA-1", iterations=1, tasks_per_iteration=2, group_size=2,
                           concurrency=4, max_new_tokens=8, device="cuda", rollout_backend="transformers", ppo=ppo,
                           env_kwargs={"max_turns": 2}, out=out, tensorboard=False, **memory)
    return model, codec, config


def _fp32_logprobs(model, batch):
    from mem1_agent.train.ppo import forward

    with torch.no_grad():  # no autocast: fp32 weights give fp32 log-probs
        return forward(model.eval(), type(batch)(*(t.to("cuda") for t in batch))).logprobs


@pytest.mark.parametrize("checkpointing", [False, True])
def test_lora_iteration_on_cuda_trains_adapters_and_saves_merged_weights(checkpointing, tiny_model_dir, tmp_path):
    """LoRA (issue 19, req. 2) with the base as the KL reference: the base stays, the adapters move, and the
    checkpoint folder is a plain model with the adapters merged in."""
    from mem1_agent.train.layouts import collate, per_turn_samples
    from mem1_agent.train.learner import train
    from transformers import AutoModelForCausalLM

    model, codec, config = _tiny_run(tiny_model_dir, tmp_path / "run", lora_rank=4, lora_alpha=8,
                                     reference="lora-base", gradient_checkpointing=checkpointing)
    base = [(p, p.detach().clone()) for p in model.parameters()]  # peft keeps these tensors as its base layers
    history = train(model, codec, config)
    assert math.isfinite(history[0]["train/loss"])
    assert all(p.device.type == "cuda" and torch.equal(p, before.to(p.device)) for p, before in base)
    assert any(".lora_B." in name and p.abs().sum() > 0 for name, p in model.named_parameters())
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "run").to("cuda")
    batch = collate(per_turn_samples(_random_trajectory(2, model.config.vocab_size, seed=3)))
    diff = (_fp32_logprobs(model, batch) - _fp32_logprobs(loaded, batch)).abs().max()
    assert diff < 1e-3, float(diff)  # merged W + BA vs the adapters applied apart: fp32 rounding only


def test_fsdp2_bf16_mixed_on_one_gpu_trains_checkpoints_and_resumes(tiny_model_dir, tmp_path):
    """precision bf16-mixed at world size 1: FSDP2 with a one-rank process group, bf16 compute over fp32 master
    weights, a checkpoint of those fp32 weights that loads, and a resume from its sharded state."""
    from mem1_agent.train.learner import train
    from torch.distributed.tensor import DTensor
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    model, codec, config = _tiny_run(tiny_model_dir, out, precision="bf16-mixed")
    seen = []
    model.model.layers[0].mlp.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    history = train(model, codec, config)
    assert math.isfinite(history[0]["train/loss"]) and set(seen) == {torch.bfloat16}
    assert all(isinstance(p, DTensor) and p.dtype == torch.float32 for p in model.parameters())
    loaded = dict(AutoModelForCausalLM.from_pretrained(out).named_parameters())
    for name, p in model.named_parameters():
        assert torch.equal(loaded[name], p.full_tensor().cpu()), name
    assert (out / "sharded").is_dir()

    model, codec, config = _tiny_run(tiny_model_dir, out, precision="bf16-mixed")
    resumed = train(model, codec, dataclasses.replace(config, iterations=2))
    assert len(resumed) == 1  # resumed after iteration 1
