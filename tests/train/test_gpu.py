"""The CUDA paths (issue 19, requirement 8): run by `scripts/gpu_check.sh` on a GPU machine, skipped elsewhere.

Tolerances: bf16 keeps 8 bits of mantissa, so a log-prob computed under bf16 autocast differs from
the fp32 one by a few hundredths of a nat on average on a random-init model; the bounds below
(mean < 0.05, max < 0.5 nats per token) catch a wrong mask or wrong positions (errors of whole nats)
and not bf16 rounding.
"""

from __future__ import annotations

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
    from mem1_agent.train.layouts import collate, per_turn_samples, prefix_cache_sample, stitched_sample, token_logprobs
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
    assert all(math.isfinite(history[0][k]) for k in ("policy_loss", "entropy", "approx_kl", "kl_ref"))
    assert next(model.parameters()).device.type == "cuda"
    assert any(not torch.equal(a, b.cpu()) for a, b in zip(before, model.parameters()))


def test_checkpoint_round_trip_on_cuda(tiny_model_dir, tmp_path):
    from mem1_agent.policies.base import TokenCodec
    from mem1_agent.tiny import load_tokenizer
    from mem1_agent.train.layouts import collate, per_turn_samples, token_logprobs
    from mem1_agent.train.learner import LearnerConfig, train
    from mem1_agent.train.ppo import PPOConfig
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
