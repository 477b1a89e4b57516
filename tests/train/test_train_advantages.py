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
