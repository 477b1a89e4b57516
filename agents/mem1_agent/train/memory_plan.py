"""Per-GPU memory plan of one training run: what ``mem1-agent train --dry-run`` prints (issue 19, req. 2).

Every term is bytes per GPU at the peak of the update step (forward + backward of one micro-batch
while the weights, gradients and AdamW state are resident). ``W`` is the world size: FSDP shards
parameters, gradients, optimizer state and the reference by ``W``, and the update keeps them sharded
(every rank makes the same model calls: :func:`mem1_agent.train.learner.update`). Outside the update,
a rank holds whole weights while it samples, and whole policy and reference weights (no gradients,
no training activations) while it recomputes log-probs (:func:`mem1_agent.train.distributed.gathered`);
the plan does not add that phase. ``P`` parameters, ``T`` of them
trainable (all, or the LoRA adapters), ``L`` layers, ``h`` hidden size, ``i`` MLP size, ``V``
vocabulary, ``b`` micro-batch samples of ``s`` tokens of which ``k`` were sampled (carry logits).

================  =====================================================================================
term              bytes
================  =====================================================================================
parameters        (T·p + (P−T)·f) / W; p = 4 (fp32, bf16-mixed: the fp32 master), 2 (bf16); frozen
                  LoRA base f = 4 (fp32), 2 (bf16, bf16-mixed)
compute copy      fp32 on CUDA: autocast's bf16 copies of the weights, 2·P: each linear saves the copy it
                  ran with for backward, so at W > 1 too they outlive FSDP's freeing of the gathered
                  fp32 weights. With FSDP2 (W > 1, or bf16-mixed at any W: it runs through FSDP2's
                  policy) also what it has gathered: c·(2·P_layer + P_root), the running layer and
                  the one prefetched, and the root (embeddings, LM head, final norm:
                  P_root = P − L·P_layer), which FSDP2 keeps gathered from forward to backward; c = 4
                  (fp32), 2 (bf16, bf16-mixed: ``MixedPrecisionPolicy`` gathers bf16)
gradients         T·g / W; g = 4 (fp32, bf16-mixed: reduced in fp32), 2 (bf16). With FSDP2 plus the whole
                  gradients before their reduce-scatter: g·(2·T_layer + T_root), a layer's and its
                  reduce-scatter copy, and the root's (trainable unless LoRA), reduced only at the end
                  of backward
optimizer         T·o / W; AdamW's two moments, o = 8 (fp32 states), 4 (bf16)
reference         only when ``kl_coef > 0``: ``copy`` keeps P·f / W more; ``lora-base`` is the base with
                  the adapters disabled (no second copy): 0
activations       saved for backward, per token and layer a = 11·h + 4·i elements (HF Qwen2 layer: two
                  RMSNorms, 3·h each (input, normalised, weighted); q, and k and v expanded to h by GQA,
                  the SDPA output and the o_proj input: 5·h; SwiGLU gate, silu(gate), up, their
                  product: 4·i), e bytes each (2 under bf16
                  autocast, 4 in fp32): b·s·L·a·e; with gradient checkpointing b·s·L·h·e (layer inputs)
                  + b·s·a·e (the layer being recomputed). Attention is SDPA (no s² scores), which is
                  the same order as Korthikanti et al. 2022's 34·s·b·h bytes per layer for GPT shapes
attention mask    the layouts' additive 4-D mask: b·s²·4 (shared by all layers)
logits            b·k·V·20: the read logits (4), log-softmax (4), its exp (4), and two fp32 gradients
                  of that size in backward (8). Qwen's 152k vocabulary makes this the largest
                  activation term at long responses
rollout           the vLLM engine's share of the GPU (``vllm_gpu_memory_utilization``) when it samples;
                  transformers rollouts hold their KV cache only while sampling, before the update
overhead          CUDA context and allocator slack: 1 GB on CUDA
================  =====================================================================================

The activation and logit constants were checked against measured CPU peaks of small fp32 Qwen2
models (``benchmarks/bench_memory_plan.py``: planned/measured 0.85-0.97; the rest is allocator and
backward scratch space). The samples are those of the stitched and per-turn layouts; the
prefix-cache layout keeps each trajectory's prompt once, so it needs less. The GPU-only terms
(compute copy, overhead) are estimates, not measured here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mem1_agent.train.learner import LearnerConfig

GB = 1e9  # decimal, as GPU datasheets count ("H200 141 GB")
DEFAULT_GPU_MEMORY_GB = 141.0  # one H200: the plan's target when no CUDA device can be asked
CUDA_OVERHEAD_BYTES = 1 * GB
LOGIT_BYTES_PER_VOCAB_ENTRY = 20
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a Qwen2/Llama-style decoder that memory depends on (``config.json`` names)."""

    hidden_size: int
    """h: width of the residual stream."""
    num_hidden_layers: int
    """L: decoder layers."""
    num_attention_heads: int
    """Query heads (head_dim = hidden_size / num_attention_heads)."""
    num_key_value_heads: int
    """K/V heads (grouped-query attention)."""
    intermediate_size: int
    """i: SwiGLU width."""
    vocab_size: int
    """V: rows of the embedding and of the LM head."""
    tie_word_embeddings: bool
    """True: the LM head reuses the embedding matrix (no second V·h block)."""
    attention_bias: bool = True
    """q/k/v projections carry biases (Qwen2 does, Llama does not)."""

    @classmethod
    def from_folder(cls, folder: str | Path) -> ModelShape:
        """Read ``config.json`` of a Hugging Face model folder."""
        path = Path(folder) / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"no model at {folder} (config.json missing): pass a model folder (build a tiny "
                                    f"one with `mem1-agent make-tiny --out {folder}`) or a shape: {sorted(SHAPES)}")
        return cls.from_config(json.loads(path.read_text(encoding="utf-8")))

    @classmethod
    def from_config(cls, raw: dict) -> ModelShape:
        """From a Hugging Face config as a dict (``config.json``, or ``model.config.to_dict()``)."""
        raw = raw.get("text_config") or raw
        return cls(raw["hidden_size"], raw["num_hidden_layers"], raw["num_attention_heads"],
                   raw.get("num_key_value_heads", raw["num_attention_heads"]), raw["intermediate_size"],
                   raw["vocab_size"], bool(raw.get("tie_word_embeddings", False)),
                   bool(raw.get("attention_bias", raw.get("model_type") == "qwen2")))

    @property
    def kv_size(self) -> int:
        return self.hidden_size // self.num_attention_heads * self.num_key_value_heads

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear layer of one decoder layer, by module name (LoRA targets)."""
        h, kv, i = self.hidden_size, self.kv_size, self.intermediate_size
        return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def layer_parameters(self) -> int:
        biases = (self.hidden_size + 2 * self.kv_size) if self.attention_bias else 0
        return sum(a * b for a, b in self.linear_shapes().values()) + biases + 2 * self.hidden_size  # + 2 norms

    def parameters(self) -> int:
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)
        return self.num_hidden_layers * self.layer_parameters() + embeddings + self.hidden_size  # + final norm

    def lora_parameters(self, rank: int, targets: Sequence[str]) -> int:
        """A (in × r) and B (r × out) per targeted linear layer."""
        shapes = self.linear_shapes()
        return self.num_hidden_layers * sum(rank * (shapes[t][0] + shapes[t][1]) for t in targets)


# Qwen2.5 shapes (their Hugging Face config.json files), so a recipe can be planned without the weights.
SHAPES = {
    "qwen2.5-0.5b": ModelShape(896, 24, 14, 2, 4864, 151936, True),
    "qwen2.5-1.5b": ModelShape(1536, 28, 12, 2, 8960, 151936, True),
    "qwen2.5-3b": ModelShape(2048, 36, 16, 2, 11008, 151936, True),
    "qwen2.5-7b": ModelShape(3584, 28, 28, 4, 18944, 152064, False),
}


def model_shape(model: str | Path) -> ModelShape:
    """A named shape (``qwen2.5-7b``) or the ``config.json`` of a model folder."""
    return SHAPES.get(str(model).lower()) or ModelShape.from_folder(model)


@dataclass(frozen=True)
class Workload:
    """What one update step holds, besides the model: the parts of the plan a config does not fix."""

    sample_tokens: int
    """s: tokens of the longest training sample (prompt, memory and turns of one trajectory)."""
    sampled_tokens: int
    """k: of those, tokens the model sampled (the only ones whose logits are computed)."""
    world_size: int = 1
    """GPUs; FSDP shards the model state by it."""
    gpu_memory_gb: float = DEFAULT_GPU_MEMORY_GB
    """Memory of one GPU (decimal GB)."""
    cuda: bool = True
    """Plan for CUDA (bf16 autocast, compute copies, context overhead); False: the CPU fp32 learner."""


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes per GPU by term, their total, and whether it fits."""

    rows: tuple[tuple[str, float, str], ...]
    """(term, bytes, how it was counted)."""
    capacity: float
    """Bytes of one GPU."""

    @property
    def total(self) -> float:
        return sum(size for _, size, _ in self.rows)

    @property
    def fits(self) -> bool:
        return self.total <= self.capacity

    def bytes_of(self, term: str) -> float:
        return next(size for name, size, _ in self.rows if name == term)

    def verdict(self) -> str:
        if self.fits:
            return f"fits: {self.total / GB:.1f} of {self.capacity / GB:.1f} GB per GPU"
        return (f"does not fit: {self.total / GB:.1f} GB per GPU needed, {self.capacity / GB:.1f} GB available; "
                f"lower {self.advice()}")

    def advice(self) -> str:
        """The remedies for the two largest terms, largest first."""
        remedies = {
            "activations": "activations: set gradient_checkpointing true or lower ppo.micro_batch_size",
            "logits": "logits: lower ppo.micro_batch_size or max_new_tokens",
            "attention mask": "the attention mask: lower ppo.micro_batch_size or the sample length",
            "optimizer": "optimizer state: set lora_rank > 0 or train on more GPUs (FSDP shards it)",
            "parameters": "parameters: more GPUs (FSDP), precision bf16, or LoRA with a bf16 base",
            "gradients": "gradients: set lora_rank > 0 or train on more GPUs",
            "reference": "the reference: reference lora-base (with LoRA) or kl_coef 0",
            "rollout": "the rollout share: lower vllm_gpu_memory_utilization",
        }
        ranked = sorted((row for row in self.rows if row[0] in remedies), key=lambda row: -row[1])
        return "; ".join(remedies[name] for name, _, _ in ranked[:2])

    def table(self) -> str:
        lines = [f"{'term':<16}{'GB/GPU':>9}  how", "-" * 72]
        lines += [f"{name:<16}{size / GB:>9.2f}  {note}" for name, size, note in self.rows]
        lines += ["-" * 72, f"{'total':<16}{self.total / GB:>9.2f}  {self.verdict()}"]
        return "\n".join(lines)


_STORE = {"fp32": 4, "bf16": 2, "bf16-mixed": 4}  # bytes per trainable parameter (fp32 master when mixed)
_FROZEN = {"fp32": 4, "bf16": 2, "bf16-mixed": 2}  # a frozen LoRA base / the reference needs no master copy
_GRAD = {"fp32": 4, "bf16": 2, "bf16-mixed": 4}
_ADAM = {"fp32": 8, "bf16": 4, "bf16-mixed": 8}


def plan_memory(shape: ModelShape, config: LearnerConfig, work: Workload) -> MemoryPlan:
    """The plan of ``config`` for ``shape`` and ``work``."""
    prec, w = config.precision, work.world_size
    p_all = shape.parameters()
    lora = config.lora_rank > 0
    trainable = shape.lora_parameters(config.lora_rank, config.lora_targets) if lora else p_all
    frozen = p_all if lora else 0  # LoRA keeps the whole base, frozen
    rows = [("parameters", (trainable * _STORE[prec] + frozen * _FROZEN[prec]) / w,
             f"{p_all / 1e9:.2f} B params" + (f" + {trainable / 1e6:.1f} M LoRA (r={config.lora_rank})" if lora else "")
             + f", {prec}" + (f", sharded over {w}" if w > 1 else ""))]
    rows.append(_compute_copy(shape, prec, work))
    rows.append(_gradients(shape, config, trainable, work))
    rows.append(("optimizer", trainable * _ADAM[prec] / w, f"AdamW 2 moments, {_ADAM[prec]} B per trainable param"))
    needs_reference = config.ppo.kl_coef > 0 and config.reference == "copy"
    rows.append(("reference", p_all * _FROZEN[prec] / w if needs_reference else 0.0,
                 "frozen copy (kl_coef > 0)" if needs_reference else
                 ("base with adapters disabled" if config.ppo.kl_coef > 0 else "none (kl_coef 0)")))
    rows += _activations(shape, config, work)
    rollout_share = config.vllm_gpu_memory_utilization if work.cuda and config.rollout_backend != "transformers" else 0
    rows.append(("rollout", rollout_share * work.gpu_memory_gb * GB,
                 f"vLLM share {rollout_share:g}" if rollout_share else "transformers: KV cache only while sampling"))
    rows.append(("overhead", CUDA_OVERHEAD_BYTES if work.cuda else 0.0, "CUDA context + allocator slack"))
    return MemoryPlan(tuple(rows), work.gpu_memory_gb * GB)


def _fsdp(precision: str, work: Workload) -> bool:
    """FSDP2 holds the model: several GPUs, or bf16-mixed (its ``MixedPrecisionPolicy``, one GPU included)."""
    return work.world_size > 1 or precision == "bf16-mixed"


def _root_parameters(shape: ModelShape) -> int:
    """Parameters outside the decoder layers (embeddings, LM head, final norm): FSDP2's root unit."""
    return shape.parameters() - shape.num_hidden_layers * shape.layer_parameters()


def _compute_copy(shape: ModelShape, precision: str, work: Workload) -> tuple[str, float, str]:
    autocast_copy = 2.0 * shape.parameters() if work.cuda and precision == "fp32" else 0.0
    if not _fsdp(precision, work):
        if autocast_copy:
            return "compute copy", autocast_copy, "autocast's bf16 weight cache"
        return "compute copy", 0.0, "none (weights already in the compute dtype)" if work.cuda else "none on CPU"
    gathered = (4 if precision == "fp32" else 2) * (2 * shape.layer_parameters() + _root_parameters(shape))
    how = "FSDP-gathered 2 layers (prefetch), root (embeddings, head)"
    return "compute copy", autocast_copy + gathered, ("autocast bf16 copies + " if autocast_copy else "") + how


def _gradients(shape: ModelShape, config: LearnerConfig, trainable: int, work: Workload) -> tuple[str, float, str]:
    g = _GRAD[config.precision]
    if not _fsdp(config.precision, work):
        return "gradients", float(trainable * g), f"{g} B per trainable param"
    lora = config.lora_rank > 0
    layer = trainable // shape.num_hidden_layers if lora else shape.layer_parameters()
    whole = g * (2 * layer + (0 if lora else _root_parameters(shape)))  # before their reduce-scatter
    how = f"{g} B per trainable param, sharded + whole ones of a layer, the root"
    return "gradients", trainable * g / work.world_size + whole, how


def _activations(shape: ModelShape, config: LearnerConfig, work: Workload) -> list[tuple[str, float, str]]:
    b, s, k = config.ppo.micro_batch_size, work.sample_tokens, min(work.sampled_tokens, work.sample_tokens)
    e = 2 if work.cuda else 4
    per_token_layer = 11 * shape.hidden_size + 4 * shape.intermediate_size  # elements saved by one layer
    if config.gradient_checkpointing:
        acts = b * s * e * (shape.num_hidden_layers * shape.hidden_size + per_token_layer)
        how = f"checkpointed: layer inputs + 1 layer, b={b} s={s}"
    else:
        acts = b * s * e * shape.num_hidden_layers * per_token_layer
        how = f"(11h + 4i) x {e} B per token and layer, b={b} s={s}"
    return [("activations", float(acts), how),
            ("attention mask", 4.0 * b * s * s, "b x s^2 x 4 B"),
            ("logits", float(b * k * shape.vocab_size * LOGIT_BYTES_PER_VOCAB_ENTRY), f"{k} sampled tokens x V x 20 B")]
