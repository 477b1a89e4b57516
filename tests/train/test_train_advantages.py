import pytest
import torch

from mem1_agent.train.advantages import gae, group_advantages, whiten


def test_gae_by_hand():
    # one trajectory, 3 tokens, reward 1 on the last, gamma 0.9, lam 0.8, terminated (bootstrap 0)
    r = torch.tensor([[0.0, 0.0, 1.0]])
    v = torch.tensor([[0.5, 0.6, 0.7]])
    adv, ret = gae(r, v, torch.ones(1, 3), torch.zeros(1), gamma=0.9, lam=0.8)
    d2 = 1.0 - 0.7  # 0.3
    d1 = 0.0 + 0.9 * 0.7 - 0.6  # 0.03
    d0 = 0.0 + 0.9 * 0.6 - 0.5  # 0.04
    a2 = d2
    a1 = d1 + 0.72 * a2  # 0.246
    a0 = d0 + 0.72 * a1  # 0.21712
    assert adv[0].tolist() == pytest.approx([a0, a1, a2])
    assert ret[0].tolist() == pytest.approx([a0 + 0.5, a1 + 0.6, a2 + 0.7])


def test_gae_bootstraps_on_truncation_and_skips_padding():
    r = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]])
    v = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.5, 0.5, 9.0, 9.0]])
    m = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    adv, ret = gae(r, v, m, torch.tensor([3.0, 0.0]), gamma=1.0, lam=1.0)
    # row 0 truncated: Monte-Carlo return is the bootstrap 3 -> advantages 3 - 1 = 2
    assert adv[0].tolist() == [2.0, 2.0, 0.0, 0.0]
    # row 1 terminated with reward 2: advantages 2 - 0.5; padding values (9) never leak in
    assert adv[1].tolist() == [1.5, 1.5, 0.0, 0.0] and ret[1].tolist() == [2.0, 2.0, 0.0, 0.0]


def test_group_advantages_by_hand():
    rewards = torch.tensor([1.0, 0.0, 2.0, 5.0, 3.0])
    groups = torch.tensor([0, 0, 0, 1, 2])
    grpo = group_advantages(rewards, groups)
    assert grpo.tolist() == pytest.approx([0.0, -1.0, 1.0, 0.0, 0.0])  # group 0 mean 1; singletons 0
    rloo = group_advantages(rewards, groups, leave_one_out=True)
    assert rloo.tolist() == pytest.approx([0.0, -1.5, 1.5, 0.0, 0.0])  # 1-(0+2)/2, 0-(1+2)/2, 2-(1+0)/2
    std = torch.tensor([1.0, 0.0, 2.0]).std(unbiased=False)
    normed = group_advantages(rewards, groups, normalize_std=True)
    assert normed[:3].tolist() == pytest.approx((torch.tensor([0.0, -1.0, 1.0]) / std).tolist(), rel=1e-5)


def test_whiten_ignores_masked_entries():
    x = torch.tensor([1.0, 3.0, 100.0])
    out = whiten(x, torch.tensor([1.0, 1.0, 0.0]))
    assert out.tolist() == pytest.approx([-1.0, 1.0, 0.0], abs=1e-4)


# Issue 19, requirement 1: the shipped defaults (no overrides beyond the algorithm's name).
@pytest.mark.parametrize("algo", ["grpo", "rloo"])
def test_a_group_that_scored_alike_gets_exactly_zero_whatever_the_other_groups_do(algo):
    from mem1_agent.train.advantages import trajectory_advantages
    from mem1_agent.train.ppo import PPOConfig

    rewards = torch.tensor([1.0, 1.0, 1.0, 3.0, 0.0, 0.0, 7.0, 0.0])  # groups 0 (alike), 1 and 2 (spread)
    groups = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    mask = torch.ones(8, 5)
    mask[0, 3:] = 0  # trajectories of different lengths
    advantages, returns = trajectory_advantages(PPOConfig(algo=algo), mask, rewards, groups=groups)
    assert torch.equal(advantages[:3], torch.zeros(3, 5))
    assert torch.equal(returns, torch.zeros(8, 5))
    # the spread groups keep their within-group differences, unscaled and un-shifted by the batch
    baseline = torch.tensor([0.0, 1.5, 1.5]) if algo == "rloo" else torch.full((3,), 1.0)
    assert torch.allclose(advantages[3:6, 0], rewards[3:6] - baseline)
    assert advantages[6, 0] == 7.0 - (0.0 if algo == "rloo" else 3.5)


def test_group_std_scaling_is_per_group():
    from mem1_agent.train.advantages import trajectory_advantages
    from mem1_agent.train.ppo import PPOConfig

    rewards, groups = torch.tensor([0.0, 2.0, 0.0, 20.0]), torch.tensor([0, 0, 1, 1])
    advantages, _ = trajectory_advantages(PPOConfig(algo="grpo", group_std=True), torch.ones(4, 1), rewards,
                                          groups=groups)
    assert torch.allclose(advantages[:, 0], torch.tensor([-1.0, 1.0, -1.0, 1.0]), atol=1e-5)


def test_an_episode_cut_by_the_turn_budget_is_terminal():
    # The budget is in the observation ("You have 0 turns left"): nothing follows the cut, so the
    # return of an unanswered episode is its reward (0), never the value of a next context.
    from mem1_agent.train.advantages import trajectory_advantages
    from mem1_agent.train.ppo import PPOConfig

    mask = torch.tensor([[1.0, 1.0, 1.0]])
    values = torch.tensor([[0.5, 2.0, 3.0]])
    config = PPOConfig(normalize_advantages=False)  # only to read the raw GAE values below
    advantages, returns = trajectory_advantages(config, mask, torch.zeros(1, 3), values)
    assert torch.equal(returns, torch.zeros(1, 3))
    assert torch.equal(advantages, -values)
    # and with the shipped default (whitened) the ranking of tokens is the same
    default, _ = trajectory_advantages(PPOConfig(), mask, torch.zeros(1, 3), values)
    assert torch.equal(default.argsort(), advantages.argsort())
