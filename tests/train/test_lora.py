"""LoRA through peft (issue 19, req. 2): only the adapters train, the reference is the base itself, checkpoints are
merged for loaders and resumable from the adapters."""

from __future__ import annotations

import json

import pytest
import torch
from mem1_agent.train import dist_checkpoint
from mem1_agent.train.layouts import TurnTokens, collate, per_turn_samples
from mem1_agent.train.learner import LearnerConfig, make_state, train
from mem1_agent.train.ppo import PPOConfig, forward

CPU = torch.device("cpu")


def lora_config(**kwargs) -> LearnerConfig:
    # the entropy bonus and the KL term move the weights even when every reward is 0
    ppo = PPOConfig(lr=3e-2, warmup_steps=0, epochs=1, mini_batch_size=4, micro_batch_size=2, ent_coef=0.01,
                    kl_coef=kwargs.pop("kl_coef", 0.01))
    kwargs = {"lora_rank": 4, "lora_alpha": 8, "reference": "lora-base", **kwargs}
    return LearnerConfig(env_id="word-bandit", tasks_per_iteration=4, concurrency=4, max_new_tokens=4, device="cpu",
                         tensorboard=False, ppo=ppo, **kwargs)


def a_batch():
    return collate(per_turn_samples([TurnTokens([2, 3], [3, 4, 5, 3]), TurnTokens([2, 3, 9, 4], [6, 3])]))


def logprobs(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return forward(model.eval(), batch).logprobs


def adapters(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if ".lora_" in name}


def test_only_the_adapters_train_and_the_base_stays_frozen(word_codec, word_bandit, word_model):
    state = make_state(word_model(word_codec), lora_config(), CPU)
    trained = {id(p) for group in state.optimizer.param_groups for p in group["params"]}
    assert trained == {id(p) for name, p in state.model.named_parameters() if ".lora_" in name} | {
        id(p) for p in state.value_head.parameters()}

    model = word_model(word_codec)
    base = [(p, p.detach().clone()) for p in model.parameters()]  # peft keeps these tensors as its base layers
    train(model, word_codec, lora_config(iterations=1), make_env=word_bandit)
    assert all(torch.equal(p, before) for p, before in base)
    assert any(".lora_B." in name and p.abs().sum() > 0 for name, p in model.named_parameters())  # B starts at 0


def test_the_lora_base_reference_is_the_base_model_without_a_copy(word_codec, word_model):
    batch = a_batch()
    model = word_model(word_codec)
    base_logprobs = logprobs(model, batch)
    state = make_state(model, lora_config(), CPU)
    with torch.no_grad():
        for name, p in state.model.named_parameters():
            if ".lora_B." in name:
                p.normal_()  # adapters that change the policy
    assert not torch.allclose(logprobs(state.model, batch), base_logprobs, atol=1e-3)
    assert torch.equal(logprobs(state.reference, batch), base_logprobs)
    assert logprobs(state.model, batch).ne(base_logprobs).any()  # the adapters are back on after the reference
    # no weights of its own: the reference's parameters are the policy's tensors
    policy = {id(p) for p in state.model.parameters()}
    assert all(id(p) in policy for p in state.reference.parameters())


def test_reference_none_is_no_reference_and_needs_kl_coef_0(word_codec, word_model):
    with pytest.raises(ValueError, match="kl_coef 0"):
        lora_config(reference="none")
    assert make_state(word_model(word_codec), lora_config(reference="none", kl_coef=0.0), CPU).reference is None


def test_checkpoint_is_merged_for_loaders_and_resumes_from_the_adapters(tmp_path, word_codec, word_bandit,
                                                                        word_model):
    from mem1_agent.policies.hf import TransformersPolicy

    out = tmp_path / "run"
    model = word_model(word_codec)
    train(model, word_codec, lora_config(iterations=1, out=out), make_env=word_bandit)
    assert (out / "adapter.safetensors").is_file() and not (out / "adapter_config.json").exists()

    batch = a_batch()
    loaded = TransformersPolicy(out).model  # what `--policy hf:OUT` loads: a plain causal LM, adapters merged in
    assert not any("lora" in name for name, _ in loaded.named_parameters())
    torch.testing.assert_close(logprobs(loaded, batch), logprobs(model, batch), rtol=0, atol=1e-5)

    # a resume restores the adapters and AdamW state onto a fresh copy of the base
    fresh = make_state(word_model(word_codec), lora_config(iterations=2, out=out), CPU)
    dist_checkpoint.load_into(fresh, out)
    saved, restored = adapters(model), adapters(fresh.model.get_base_model())
    assert any(".lora_B." in name and p.abs().sum() > 0 for name, p in saved.items())  # trained: not the base
    assert restored.keys() == saved.keys() and all(torch.equal(restored[name], saved[name]) for name in saved)
    assert fresh.iteration == 1 and len(fresh.optimizer.state) > 0
    history = train(word_model(word_codec), word_codec, lora_config(iterations=2, out=out), make_env=word_bandit)
    assert len(history) == 1 and json.loads((out / "trainer_state.json").read_text())["iteration"] == 2
