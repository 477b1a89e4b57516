import math

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from mem1_agent.train.layouts import TurnTokens, collate, stitched_sample
from mem1_agent.train.ppo import Forward, PPOConfig, ValueHead, explained_variance, forward, ppo_loss


def tiny():
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return Qwen2ForCausalLM(config)


def test_clipped_policy_loss_by_hand():
    mask = torch.ones(1, 2)
    old = torch.zeros(1, 2)
    new = Forward(torch.tensor([[math.log(1.5), math.log(0.5)]]), torch.zeros(1, 2), None)
    adv = torch.tensor([[1.0, -1.0]])
    loss, stats = ppo_loss(new, old, adv, mask, PPOConfig(algo="grpo", clip_eps=0.2))
    # token 0: ratio 1.5, A=+1 -> min(1.5, 1.2) = 1.2; token 1: ratio 0.5, A=-1 -> min(-0.5, -0.8) = -0.8
    assert float(loss) == pytest.approx(-(1.2 - 0.8) / 2)
    assert stats["clip_frac"] == 1.0


def test_clipped_value_loss_by_hand():
    mask = torch.ones(1, 1)
    new = Forward(torch.zeros(1, 1), torch.zeros(1, 1), torch.tensor([[1.0]]))
    loss, stats = ppo_loss(new, torch.zeros(1, 1), torch.zeros(1, 1), mask, PPOConfig(value_clip=0.2, vf_coef=1.0),
                           old_values=torch.tensor([[0.0]]), returns=torch.tensor([[2.0]]))
    # unclipped (1-2)^2 = 1, clipped (0.2-2)^2 = 3.24 -> max 3.24, times 0.5
    assert stats["value_loss"] == pytest.approx(1.62) and float(loss) == pytest.approx(1.62)


def test_config_checks_say_what_to_change():
    with pytest.raises(ValueError, match="multiple of micro_batch_size"):
        PPOConfig(micro_batch_size=3, mini_batch_size=8)
    with pytest.raises(ValueError, match="algo must be"):
        PPOConfig(algo="a2c")


def test_one_update_changes_parameters_and_loss_is_finite():
    model, ref = tiny(), tiny()
    head = ValueHead(model.config.hidden_size)
    turns = [TurnTokens([1, 2, 3, 4], [5, 6, 7]), TurnTokens([1, 2, 3, 4, 5, 6, 7, 9], [8, 10])]
    batch = collate([stitched_sample(turns)])
    with torch.no_grad():
        old = forward(model, batch, head)
        ref_lp = forward(ref, batch).logprobs
    returns = batch.loss_mask * 1.0
    advantages = (returns - old.values) * batch.loss_mask
    config = PPOConfig(kl_coef=0.1, ent_coef=0.01, lr=1e-3)
    params = [p for p in model.parameters()] + list(head.parameters())
    before = [p.detach().clone() for p in params]
    optimizer = torch.optim.AdamW(params, lr=config.lr)
    loss, stats = ppo_loss(forward(model, batch, head), old.logprobs, advantages, batch.loss_mask, config,
                           old_values=old.values, returns=returns, ref_logprobs=ref_lp)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and all(math.isfinite(v) for v in stats.values())
    assert stats["approx_kl"] == pytest.approx(0.0, abs=1e-6)  # first epoch: new == old
    assert sum(not torch.equal(a, b) for a, b in zip(before, params)) > len(params) // 2


def test_kl_to_the_reference_is_k3_per_token_clipped_from_above():
    mask = torch.ones(1, 3)
    logprobs = torch.log(torch.tensor([[0.5, 0.25, 1e-6]])).requires_grad_()
    ref = torch.log(torch.tensor([[0.5, 0.5, 0.9]]))  # the reference likes token 3 ~1e6 times more
    new = Forward(logprobs, torch.zeros(1, 3), None)
    k3 = [0.0, 2 - math.log(2) - 1, 0.9e6 - math.log(0.9e6) - 1]
    for clip, expected in ((None, sum(k3) / 3), (10.0, (k3[0] + k3[1] + 10.0) / 3)):
        config = PPOConfig(algo="rloo", kl_coef=1.0, kl_clip=clip)
        loss, stats = ppo_loss(new, logprobs.detach(), torch.zeros(1, 3), mask, config, ref_logprobs=ref)
        assert stats["kl"] == pytest.approx(expected, rel=1e-4)
        (grad,) = torch.autograd.grad(loss, logprobs)
        # d k3 / d logp = 1 - exp(ref - logp): token 1 none, token 2 -1 (/3 for the mean), token 3 huge unless clipped
        assert grad[0, :2].tolist() == pytest.approx([0.0, -1 / 3], abs=1e-5)
        assert (grad[0, 2] == 0) if clip else (grad[0, 2] < -1e5)
    with pytest.raises(ValueError, match="kl_clip"):
        PPOConfig(kl_clip=0)


def test_explained_variance():
    r = torch.tensor([[1.0, 2.0, 3.0]])
    m = torch.ones(1, 3)
    assert explained_variance(r, r, m) == 1.0
    assert explained_variance(torch.full((1, 3), 2.0), r, m) == pytest.approx(0.0)


def test_adamw_with_warmup_ramps_then_holds_and_the_step_clips():
    from mem1_agent.train.optim import adamw_with_warmup, clipped_step

    weight = torch.nn.Parameter(torch.zeros(3))
    optimizer, scheduler = adamw_with_warmup([weight], lr=0.1, weight_decay=0.0, warmup_steps=4)
    rates = []
    for _ in range(6):
        rates.append(scheduler.get_last_lr()[0])
        (weight * torch.tensor([30.0, 40.0, 0.0])).sum().backward()  # gradient norm 50
        assert clipped_step([weight], optimizer, scheduler, max_grad_norm=1.0) == 50.0
        assert weight.grad is None
    assert rates == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])
