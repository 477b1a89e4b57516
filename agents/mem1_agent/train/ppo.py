"""PPO for a token-emitting policy: clipped policy loss, clipped value loss, KL to a reference, entropy.

Everything is computed on sampled tokens only (``Batch.loss_mask``): prompt and observation tokens
never carry policy loss, value loss, KL or entropy. The KL uses the k3 estimator
``exp(ref - logp) - (ref - logp) - 1``, which is non-negative per token without clamping (the
original clamped a k1 estimate at 0: reference/mem1.md §8, B9); its only clamp is from above
(``kl_clip``), because it grows exponentially: one sampled token the reference likes e^11 times
more than the policy gave a whole batch's KL of 32 in a demo run (the others were <= 0.02).

The model runs here too (:func:`read_outputs`, :func:`forward`): on a batch of any layout of
:mod:`mem1_agent.train.layouts`, with logits computed only where a sampled token is read; the
(tokens x vocabulary) projection and softmax of the prompt and observation slots would be thrown away.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from mem1_agent.train.layouts import Batch, PrefixCacheBatch


@dataclass(frozen=True)
class PPOConfig:
    """Hyper-parameters of one PPO update."""

    algo: str = "ppo"
    """"ppo" (value head + GAE), "grpo" (group mean baseline) or "rloo" (leave-one-out baseline)."""
    clip_eps: float = 0.2
    """Policy ratio clip range."""
    value_clip: float = 0.2
    """Value clip range around the rollout-time value (PPO only)."""
    vf_coef: float = 0.5
    """Weight of the value loss (PPO only)."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus."""
    kl_coef: float = 0.0
    """Weight of the KL penalty to the frozen reference policy; 0 skips the reference forward."""
    kl_clip: float | None = 10.0
    """Upper bound on each token's k3 term (as verl's ``low_var_kl``); a token past it adds ``kl_clip``
    and no gradient. None: unbounded."""
    gamma: float = 1.0
    """Discount over sampled tokens (1: the outcome counts fully for every token)."""
    lam: float = 1.0
    """GAE lambda."""
    normalize_advantages: bool = True
    """PPO only: whiten the GAE advantages over the batch's sampled tokens. GRPO/RLOO advantages are
    never re-centred across groups (a group that scored alike keeps advantage 0); see ``group_std``."""
    group_std: bool = False
    """GRPO/RLOO: divide each group's advantages by that group's reward std (never the batch's)."""
    lr: float = 1e-5
    """AdamW learning rate after warm-up."""
    warmup_steps: int = 0
    """Optimizer steps of linear learning-rate warm-up."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    epochs: int = 1
    """Passes over each batch of rollouts."""
    micro_batch_size: int = 4
    """Samples per forward/backward; gradients accumulate over a mini-batch."""
    mini_batch_size: int = 16
    """Samples per optimizer step."""

    def __post_init__(self) -> None:
        if self.algo not in ("ppo", "grpo", "rloo"):
            raise ValueError(f"algo must be 'ppo', 'grpo' or 'rloo', got {self.algo!r}")
        if not 0 < self.clip_eps < 1:
            raise ValueError(f"clip_eps must be in (0, 1), got {self.clip_eps}")
        if self.kl_clip is not None and self.kl_clip <= 0:
            raise ValueError(f"kl_clip must be > 0 or None, got {self.kl_clip}")
        if self.kl_coef < 0 or self.ent_coef < 0 or self.vf_coef < 0:
            raise ValueError("kl_coef, ent_coef and vf_coef must be >= 0 (0 turns a term off)")
        if not (0 < self.gamma <= 1 and 0 <= self.lam <= 1):
            raise ValueError(f"need 0 < gamma <= 1 and 0 <= lam <= 1, got gamma={self.gamma}, lam={self.lam}")
        if self.micro_batch_size < 1 or self.mini_batch_size % self.micro_batch_size:
            raise ValueError(
                f"mini_batch_size ({self.mini_batch_size}) must be a positive multiple of micro_batch_size "
                f"({self.micro_batch_size}): gradients accumulate over whole micro-batches"
            )
        if self.lr <= 0 or self.warmup_steps < 0 or self.epochs < 1:
            raise ValueError("lr must be > 0, warmup_steps >= 0 and epochs >= 1")


class ValueHead(torch.nn.Module):
    """A scalar value per position from the policy's last hidden state (shared trunk)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.proj = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.proj.weight)  # start at V = 0: no spurious advantages at step 0
        torch.nn.init.zeros_(self.proj.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # (B, S, H) -> (B, S)
        return self.proj(hidden.float())[..., 0]


class Reads(NamedTuple):
    """The model's outputs where sampled tokens are read, K per batch row, and where they belong."""

    logits: torch.Tensor  # (B, K, V) logits predicting each sampled token
    hidden: torch.Tensor | None  # (B, K, H) last hidden state at the same positions (for a value head)
    target_ids: torch.Tensor  # (B, K) the sampled tokens
    slots: torch.Tensor  # (B, K) their slot in the batch's (B, S) tensors (``loss_mask``, ...)

    def place(self, values: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
        """(B, K) values -> (B, S) aligned with ``loss_mask``, 0 off it."""
        return torch.zeros_like(loss_mask).scatter(1, self.slots, values.to(loss_mask.dtype)) * loss_mask


# Attention implementations that apply an additive (B, 1, Q, K) float mask as given. flash_attention_2
# and kernels like it take only a 2-D padding mask and would train on contexts the policy never saw.
ADDITIVE_MASK_ATTENTION = ("sdpa", "eager")


def check_attention(model: torch.nn.Module) -> None:
    """Refuse a model whose attention cannot take the layouts' additive 4-D masks (issue 19, 1f)."""
    implementation = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if implementation is not None and implementation not in ADDITIVE_MASK_ATTENTION:
        raise ValueError(
            f"the model uses attn_implementation={implementation!r}, which cannot apply the additive 4-D "
            f"attention masks of the training layouts (every turn must see exactly its rollout context); "
            f"load it with attn_implementation=\"sdpa\" (or \"eager\"), e.g. "
            f"AutoModelForCausalLM.from_pretrained(path, attn_implementation=\"sdpa\")"
        )


def additive_mask(model: torch.nn.Module, mask: torch.Tensor) -> torch.Tensor:
    """The layouts' additive 4-D mask in the dtype attention runs in: under autocast its dtype (bf16 on
    CUDA), so that it is cast once per forward and not again in every layer's attention call (see
    docs/benchmarks.md, "Learner on one H200"); otherwise the weights' dtype. Masked entries are
    clamped to that dtype's lowest finite value, never -inf (a fully masked padding row stays finite)."""
    weight = next(model.parameters())
    kind = weight.device.type
    dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else weight.dtype
    if mask.dtype == dtype:
        return mask
    return mask.clamp(min=torch.finfo(dtype).min).to(dtype)


def read_outputs(model: torch.nn.Module, batch: Batch | PrefixCacheBatch, hidden: bool = False) -> Reads:
    """Run ``model`` on a batch of any layout; logits (and hidden states) only where sampled tokens are read.

    ``logits_to_keep`` (one set of columns for all rows of a pass: the union of their read
    columns) keeps the vocabulary projection off the prompt and observation slots; log-softmax
    and entropy then run on K sampled tokens per row, not on every slot.
    """
    check_attention(model)
    if isinstance(batch, PrefixCacheBatch):
        return _read_prefix_cache(model, batch, hidden)
    n_read = int(batch.loss_mask.sum(1).max())
    # each row's sampled slots first, in slot order (a stable sort of the 0/1 mask)
    slots = batch.loss_mask.argsort(dim=1, descending=True, stable=True)[:, :n_read]  # (B, K)
    rows = torch.arange(len(slots), device=slots.device)[:, None].expand_as(slots)
    cols = batch.logit_index.gather(1, slots)
    kept = cols.unique()  # sorted: the columns ``out.logits`` holds, in this order
    out = model(input_ids=batch.input_ids, attention_mask=additive_mask(model, batch.attention_mask),
                position_ids=batch.position_ids, logits_to_keep=kept, output_hidden_states=hidden)
    logits = out.logits[rows, torch.searchsorted(kept, cols)]  # (B, K, V)
    return Reads(logits, out.hidden_states[-1][rows, cols] if hidden else None, batch.target_ids.gather(1, slots), slots)


def _read_prefix_cache(model: torch.nn.Module, batch: PrefixCacheBatch, hidden: bool) -> Reads:
    """Pass 1 (prefix + lead turn, K/V kept with gradient), then pass 2 (the other turns reading that K/V).

    The outputs of both passes are flattened into one list of positions and indexed once, so a
    trajectory's sampled tokens come back in turn order whichever pass computed them.
    """
    b, lead_width = batch.lead_ids.shape
    row, col = batch.read_row, batch.read_col  # (B, T); row >= b: pass-2 row (row - b)
    in_lead = row < b
    kept = col[in_lead].unique()  # sorted: the columns pass 1's logits hold, in this order
    out = model(input_ids=batch.lead_ids, use_cache=len(batch.row_ids) > 0, logits_to_keep=kept,
                output_hidden_states=hidden)
    logits = out.logits.flatten(0, 1)
    logit_index = row * len(kept) + torch.searchsorted(kept, col)
    states = out.hidden_states[-1].flatten(0, 1) if hidden else None
    state_index = row * lead_width + col
    if len(batch.row_ids):
        from mem1_agent.policies.hf import cache_argument  # "cache" or "past_key_values": transformers' version

        cache_name = cache_argument(model)
        cache = getattr(out, cache_name)
        cache.batch_select_indices(batch.row_owner)  # (B, ...) -> (R, ...): row r gets its trajectory's K/V
        # a placeholder pass 2 (collate's ``two_passes``) is read nowhere: keep one column anyway, whose
        # logits join the concatenation below, so that backward runs through pass 2 like any other
        kept = col[~in_lead].unique() if bool((~in_lead).any()) else torch.zeros(1, dtype=col.dtype, device=col.device)
        out = model(input_ids=batch.row_ids, attention_mask=additive_mask(model, batch.attention_mask),
                    position_ids=batch.row_positions, use_cache=True, logits_to_keep=kept,
                    output_hidden_states=hidden, **{cache_name: cache})
        pass_2 = len(logits) + (row - b) * len(kept) + torch.searchsorted(kept, col)
        logit_index = torch.where(in_lead, logit_index, pass_2)
        logits = torch.cat([logits, out.logits.flatten(0, 1)])
        if hidden:
            state_index = torch.where(in_lead, state_index, len(states) + (row - b) * batch.row_ids.shape[1] + col)
            states = torch.cat([states, out.hidden_states[-1].flatten(0, 1)])
    slots = torch.arange(row.shape[1], device=row.device).expand_as(row)
    return Reads(logits[logit_index], states[state_index] if hidden else None, batch.target_ids, slots)


def token_logprobs(model: torch.nn.Module, batch: Batch | PrefixCacheBatch) -> torch.Tensor:
    """Log-prob of every target token under ``model`` (0 where ``loss_mask`` is 0). Returns (B, S)."""
    reads = read_outputs(model, batch)
    picked = torch.log_softmax(reads.logits.float(), dim=-1).gather(2, reads.target_ids[..., None])[..., 0]
    return reads.place(picked, batch.loss_mask)


class Forward(NamedTuple):
    """The policy's (and value head's) outputs on a batch, aligned with its ``loss_mask``."""

    logprobs: torch.Tensor  # (B, S) of the target tokens, 0 off the loss mask
    entropy: torch.Tensor  # (B, S) of the predicting distribution, 0 off the loss mask
    values: torch.Tensor | None  # (B, S) value of the state before each sampled token


def forward(model: torch.nn.Module, batch: Batch | PrefixCacheBatch, value_head: ValueHead | None = None) -> Forward:
    """One forward pass over a batch of any layout; every output is (B, S) aligned with ``batch.loss_mask``."""
    reads = read_outputs(model, batch, hidden=value_head is not None)
    logp_all = torch.log_softmax(reads.logits.float(), dim=-1)  # (B, K, V): sampled tokens only
    logprobs = reads.place(torch.gather(logp_all, 2, reads.target_ids[..., None])[..., 0], batch.loss_mask)
    entropy = reads.place(-(logp_all.exp() * logp_all).sum(-1), batch.loss_mask)
    values = reads.place(value_head(reads.hidden), batch.loss_mask) if value_head is not None else None
    return Forward(logprobs, entropy, values)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def ppo_loss(new: Forward, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
             config: PPOConfig, old_values: torch.Tensor | None = None, returns: torch.Tensor | None = None,
             ref_logprobs: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The PPO objective on one micro-batch; all tensors (B, S) aligned with ``Batch`` slots."""
    log_ratio = (new.logprobs - old_logprobs) * mask
    ratio = log_ratio.exp()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - config.clip_eps, 1 + config.clip_eps) * advantages
    policy_loss = masked_mean(-torch.minimum(unclipped, clipped), mask)
    loss = policy_loss - config.ent_coef * masked_mean(new.entropy, mask)
    stats = _detached_stats(policy_loss, new.entropy, ratio, log_ratio, mask, config)
    if config.algo == "ppo":
        v_clipped = old_values + (new.values - old_values).clamp(-config.value_clip, config.value_clip)
        value_loss = 0.5 * masked_mean(torch.maximum((new.values - returns) ** 2, (v_clipped - returns) ** 2), mask)
        loss = loss + config.vf_coef * value_loss
        stats["value_loss"] = value_loss.item()
    if config.kl_coef > 0:
        log_ref_ratio = (ref_logprobs - new.logprobs) * mask
        k3 = log_ref_ratio.exp() - log_ref_ratio - 1
        kl = masked_mean(k3 if config.kl_clip is None else k3.clamp(max=config.kl_clip), mask)
        loss = loss + config.kl_coef * kl
        stats["kl"] = kl.item()  # to the reference: the penalised KL (approx_kl is to the sampling weights)
    return loss, stats


@torch.no_grad()
def _detached_stats(policy_loss, entropy, ratio, log_ratio, mask, config: PPOConfig) -> dict[str, float]:
    return {
        "policy_loss": policy_loss.item(),
        "entropy": masked_mean(entropy, mask).item(),
        # k3 estimate of KL(old || new): always >= 0, the usual PPO early-stopping signal
        "approx_kl": masked_mean(ratio - 1 - log_ratio, mask).item(),
        "clip_frac": masked_mean(((ratio - 1).abs() > config.clip_eps).float(), mask).item(),
    }


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(returns - values) / Var(returns) over sampled tokens (1 is perfect, <= 0 useless)."""
    n = mask.sum().clamp(min=1)
    mean_r = (returns * mask).sum() / n
    var_r = (((returns - mean_r) * mask) ** 2).sum() / n
    diff = (returns - values) * mask
    var_d = (((diff - diff.sum() / n) * mask) ** 2).sum() / n
    return float(1 - var_d / var_r) if var_r > 0 else float("nan")
