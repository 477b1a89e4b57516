"""vLLM backend (GPU): the same contract as the transformers policy, served by ``vllm.LLM``.

vLLM is imported lazily and never a dependency: its PyPI wheel is a CUDA build that pins its own
torch (SETUP-NOTES, vLLM). Contexts go in as token ids (``TokensPrompt``), so the engine reads
exactly what the records say; ids and log-probs come back as sampled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mem1_agent.policies.base import (
    Generation,
    GenerationRequest,
    Policy,
    SamplingConfig,
    TokenCodec,
)
from mem1_agent.records import FinishReason

VLLM_MISSING = (
    "the vllm backend needs the `vllm` package and a CUDA GPU, and `import vllm` failed ({err}). "
    "Install a vLLM build that matches your CUDA torch (`pip install vllm` on a GPU machine), or use "
    "--policy hf:PATH (transformers, CPU or CUDA) or --policy openai:http://HOST:PORT/v1:MODEL against "
    "a running `vllm serve`."
)


def require_vllm() -> Any:
    """Import vllm or raise with the remedy (called before any env is built)."""
    try:
        import vllm
    except ImportError as err:
        raise RuntimeError(VLLM_MISSING.format(err=err)) from err
    return vllm


class VLLMPolicy(Policy):
    """An offline ``vllm.LLM`` engine (prefix caching on: MEM1 contexts share the task prompt)."""

    def __init__(self, model: str, sampling: SamplingConfig = SamplingConfig(), **engine_kwargs: Any) -> None:
        vllm = require_vllm()
        engine_kwargs.setdefault("enable_prefix_caching", True)
        self.engine = vllm.LLM(model=model, seed=sampling.seed, **engine_kwargs)
        self.codec = TokenCodec(self.engine.get_tokenizer(), name=f"vllm:{model}")
        self.name = f"vllm:{model}"
        self.window = self.engine.llm_engine.model_config.max_model_len
        self.sampling = sampling
        self._vllm = vllm

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        from vllm.inputs import TokensPrompt

        params = [
            self._vllm.SamplingParams(
                temperature=self.sampling.temperature,
                top_p=self.sampling.top_p,
                max_tokens=min(r.max_new_tokens, self.sampling.max_new_tokens),
                stop=list(r.stop),
                include_stop_str_in_output=True,
                logprobs=0,  # the sampled token's own log-prob
            )
            for r in requests
        ]
        prompts = [TokensPrompt(prompt_token_ids=list(r.context_ids)) for r in requests]
        outputs = self.engine.generate(prompts, params, use_tqdm=False)
        return [_to_generation(o.outputs[0], self.codec) for o in outputs]


def _to_generation(completion: Any, codec: TokenCodec) -> Generation:
    ids = tuple(completion.token_ids)
    logprobs = None
    if completion.logprobs is not None:
        logprobs = tuple(float(step[tok].logprob) for step, tok in zip(completion.logprobs, ids))
    if completion.finish_reason == "length":
        finish = FinishReason.LENGTH
    elif ids and ids[-1] in codec.eos_ids:
        finish = FinishReason.EOS
    else:
        finish = FinishReason.STOP
    return Generation(ids, codec.decode(ids, skip_special_tokens=True), logprobs, finish, ids_as_sampled=True)
