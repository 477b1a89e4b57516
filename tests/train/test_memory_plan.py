"""The per-GPU memory plan (``--dry-run``) against hand-computed bytes and real parameter counts.

Its agreement with measured CPU peaks is in ``benchmarks/bench_memory_plan.py`` (too slow and noisy
for a test on a shared 2-core machine).
"""

from __future__ import annotations

import pytest
from mem1_agent.train.learner import LearnerConfig
from mem1_agent.train.memory_plan import GB, SHAPES, ModelShape, Workload, model_shape, plan_memory
from mem1_agent.train.ppo import PPOConfig

# h=8, L=2, 2 heads of 4 (kv_size 4 with 1 K/V head), i=16, V=32, tied. One layer: q 64 + k 32 + v 32 + o 64
# + gate 128 + up 128 + down 128 = 576 weights, q/k/v biases 16, two norms 16 = 608; the model:
# 2 * 608 + embeddings 256 + final norm 8 = 1480 parameters.
TOY = ModelShape(8, 2, 2, 1, 16, 32, True)


def toy_config(**kwargs) -> LearnerConfig:
    ppo = PPOConfig(micro_batch_size=2, mini_batch_size=2, kl_coef=kwargs.pop("kl_coef", 0.0))
    return LearnerConfig(ppo=ppo, rollout_backend=kwargs.pop("rollout_backend", "transformers"), **kwargs)


def test_toy_shape_counts_by_hand():
    assert TOY.layer_parameters() == 608 and TOY.parameters() == 1480
    assert TOY.lora_parameters(2, ("q_proj", "v_proj")) == 2 * 2 * ((8 + 8) + (8 + 4))  # layers * r * (in + out)


def test_cpu_fp32_plan_matches_hand_computed_bytes():
    plan = plan_memory(TOY, toy_config(), Workload(sample_tokens=10, sampled_tokens=4, cuda=False))
    expected = {
        "parameters": 1480 * 4, "compute copy": 0, "gradients": 1480 * 4, "optimizer": 1480 * 8, "reference": 0,
        "activations": 2 * 10 * 2 * 4 * (11 * 8 + 4 * 16),  # b * s * L * 4 bytes * (11h + 4i)
        "attention mask": 4 * 2 * 10 * 10,  # b * s^2 * 4
        "logits": 2 * 4 * 32 * 20,  # b * k * V * 20
        "rollout": 0, "overhead": 0,
    }
    assert {name: size for name, size, _ in plan.rows} == expected
    assert plan.total == 53_920


def test_fsdp_mixed_precision_checkpointing_and_reference_by_hand():
    config = toy_config(precision="bf16-mixed", gradient_checkpointing=True, kl_coef=0.1, rollout_backend="auto")
    plan = plan_memory(TOY, config, Workload(sample_tokens=10, sampled_tokens=4, world_size=2, gpu_memory_gb=10))
    # FSDP2's root unit: embeddings 256 + final norm 8 = 1480 - 2 layers of 608
    assert plan.bytes_of("parameters") == 1480 * 4 / 2  # fp32 master shards
    assert plan.bytes_of("compute copy") == 2 * (2 * 608 + 264)  # bf16-gathered: two layers and the root
    fp32 = plan_memory(TOY, toy_config(), Workload(sample_tokens=10, sampled_tokens=4, world_size=2))
    assert fp32.bytes_of("compute copy") == 2 * 1480 + 4 * (2 * 608 + 264)  # autocast's copies + fp32 gathered
    cpu = plan_memory(TOY, toy_config(), Workload(sample_tokens=10, sampled_tokens=4, world_size=2, cuda=False))
    assert cpu.bytes_of("compute copy") == 4 * (2 * 608 + 264)  # no autocast on CPU
    # shards, plus a layer's whole gradient and its reduce-scatter copy, and the root's until the end of backward
    assert plan.bytes_of("gradients") == 1480 * 4 / 2 + 4 * (2 * 608 + 264)
    assert plan.bytes_of("optimizer") == 1480 * 8 / 2
    assert plan.bytes_of("reference") == 1480 * 2 / 2  # bf16 frozen copy, sharded like the policy
    assert plan.bytes_of("activations") == 2 * 10 * 2 * (2 * 8 + 11 * 8 + 4 * 16)  # inputs of 2 layers + 1 layer
    assert plan.bytes_of("rollout") == 0.3 * 10 * GB and plan.bytes_of("overhead") == 1 * GB


def test_bf16_mixed_on_one_gpu_is_planned_as_fsdp2():
    # bf16-mixed runs through FSDP2's MixedPrecisionPolicy at one rank too: its bf16 gathered units and whole grads
    plan = plan_memory(TOY, toy_config(precision="bf16-mixed"), Workload(sample_tokens=10, sampled_tokens=4))
    assert plan.bytes_of("compute copy") == 2 * (2 * 608 + 264)
    assert plan.bytes_of("gradients") == 1480 * 4 + 4 * (2 * 608 + 264)


def test_lora_trains_only_the_adapters_and_its_reference_is_free():
    config = toy_config(precision="bf16", lora_rank=2, lora_targets=("q_proj", "v_proj"), reference="lora-base",
                        kl_coef=0.1)
    plan = plan_memory(TOY, config, Workload(sample_tokens=10, sampled_tokens=4, cuda=False))
    assert plan.bytes_of("parameters") == 112 * 2 + 1480 * 2  # adapters + the frozen bf16 base
    assert plan.bytes_of("gradients") == 112 * 2 and plan.bytes_of("optimizer") == 112 * 4
    assert plan.bytes_of("reference") == 0  # the base with the adapters disabled
    sharded = plan_memory(TOY, config, Workload(sample_tokens=10, sampled_tokens=4, world_size=2, cuda=False))
    assert sharded.bytes_of("gradients") == 112 * 2 / 2 + 2 * 2 * 56  # + one layer's adapters, twice; root frozen


@pytest.mark.parametrize("tied", [True, False])
def test_shape_from_a_model_folder_counts_the_real_parameters(tmp_path, tied):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=64, vocab_size=100, tie_word_embeddings=tied)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(tmp_path)
    real = sum(p.numel() for p in model.parameters())  # a tied matrix is counted once
    assert model_shape(tmp_path).parameters() == real


def test_named_qwen_shapes_match_the_published_sizes():
    published = {"qwen2.5-0.5b": 0.494e9, "qwen2.5-1.5b": 1.54e9, "qwen2.5-3b": 3.09e9, "qwen2.5-7b": 7.62e9}
    for name, size in published.items():
        assert SHAPES[name].parameters() == pytest.approx(size, rel=0.005)
    with pytest.raises(FileNotFoundError, match="qwen2.5-7b"):
        model_shape("qwen9-nowhere")


def test_verdict_names_the_largest_terms_to_lower():
    plan = plan_memory(SHAPES["qwen2.5-7b"], LearnerConfig(), Workload(sample_tokens=8192, sampled_tokens=6000))
    assert not plan.fits
    verdict = plan.verdict()
    assert verdict.startswith("does not fit") and "gradient_checkpointing" in verdict
    assert "optimizer" in plan.table() and "does not fit" in plan.table()
