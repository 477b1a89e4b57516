"""vLLM backend (GPU): the same contract as the transformers policy, served by ``vllm.LLM``.

vLLM is imported lazily and never a dependency: its PyPI wheel is a CUDA build that pins its own
torch (SETUP-NOTES, vLLM). Contexts go in as token ids (``TokensPrompt``), so the engine reads
exactly what the records say; ids and log-probs come back as sampled.

Two uses:

* :class:`VLLMPolicy`: evaluation (``--policy vllm:MODEL``), one engine over a model folder;
* :class:`VLLMRolloutEngine`: the learner's rollouts on a GPU. One engine per training run, started
  from the learner's initial weights (written once with ``save_pretrained``); before every
  collection :meth:`VLLMRolloutEngine.sync_weights` copies the learner's current ``state_dict``
  into the engine's model in memory (no disk) and resets the prefix cache, whose KV blocks were
  computed with the old weights. The policy it hands out is a :class:`VLLMPolicy` over the
  learner's own :class:`TokenCodec`, so the records are those of the transformers backend.

Weight sync uses the in-process engine (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, set before the
engine starts unless the caller set it): the engine's ``nn.Module`` is then reachable as
``llm.llm_engine.model_executor.driver_worker.worker.model_runner.model`` and its
``load_weights(weights=...)`` copies each tensor into place (dtype cast included). With a
multi-process engine the same ``load_weights`` runs in the worker through ``LLM.collective_rpc``
(tensors pass through CPU; recent vLLM needs ``VLLM_ALLOW_INSECURE_SERIALIZATION=1`` to send a
function there). vLLM's own weight-transfer API (``init_weight_transfer_engine`` /
``update_weights``, NCCL or CUDA IPC) is not used: it changed shape between releases.
**None of this has run on a GPU** (no GPU and no vLLM on the development machines); the wiring is
tested against a stand-in object with the same attribute and method names.
"""

from __future__ import annotations

import gc
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
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
    "{alternative}."
)
EVAL_ALTERNATIVE = ("--policy hf:PATH (transformers, CPU or CUDA) or --policy openai:http://HOST:PORT/v1:MODEL "
                    "against a running `vllm serve`")
TRAIN_ALTERNATIVE = "--rollout-backend transformers (or auto, which falls back to it)"

MODEL_PATHS = (
    "llm_engine.model_executor.driver_worker.worker.model_runner.model",
    "llm_engine.model_executor.driver_worker.model_runner.model",
)
"""Where an in-process engine keeps its ``nn.Module``: V1 with ``VLLM_ENABLE_V1_MULTIPROCESSING=0``
(``LLMEngine.model_executor`` is set only then) and V0 (the worker wrapper forwards attributes)."""


def require_vllm(alternative: str = EVAL_ALTERNATIVE) -> Any:
    """Import vllm or raise with the remedy (called before any env is built)."""
    try:
        import vllm
    except Exception as err:  # a CUDA wheel next to a CPU torch fails with errors other than ImportError
        raise RuntimeError(VLLM_MISSING.format(err=err, alternative=alternative)) from err
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

    @classmethod
    def from_engine(cls, engine: Any, codec: TokenCodec, sampling: SamplingConfig,
                    name: str = "vllm:live") -> VLLMPolicy:
        """Sample from an engine already running (the learner's), reading and writing ids with ``codec``."""
        policy = cls.__new__(cls)
        policy.engine, policy.codec, policy.name, policy.sampling = engine, codec, name, sampling
        policy.window = engine.llm_engine.model_config.max_model_len
        policy._vllm = require_vllm(TRAIN_ALTERNATIVE)
        return policy

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


class VLLMRolloutEngine:
    """One vLLM engine per training run that samples with the learner's current weights.

    ``folder`` receives the initial weights and tokenizer (``save_pretrained``) the engine starts
    from; later weights never touch disk. ``gpu_memory_utilization`` is the share of the GPU the
    engine may take (weights + KV cache): the learner's weights, gradients and AdamW states live on
    the same GPU. ``engine_kwargs`` go to ``vllm.LLM`` (``dtype`` defaults to bfloat16 because the
    learner saves fp32 weights, which older vLLM serves as float16).
    """

    def __init__(self, model: Any, codec: TokenCodec, folder: str | Path | None = None, *, seed: int = 0,
                 gpu_memory_utilization: float = 0.3, **engine_kwargs: Any) -> None:
        from mem1_agent.tiny import TOKENIZER_SUBDIR

        vllm = require_vllm(TRAIN_ALTERNATIVE)
        # In-process engine core: its model is an attribute away, so weights are copied GPU to GPU.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        self._tmp = tempfile.TemporaryDirectory(prefix="mem1-vllm-") if folder is None else None
        folder = Path(self._tmp.name if self._tmp else folder)
        model.save_pretrained(folder)
        codec.tokenizer.save_pretrained(str(folder / TOKENIZER_SUBDIR))  # own folder: SETUP-NOTES, tokenizer gotcha
        engine_kwargs.setdefault("enable_prefix_caching", True)
        engine_kwargs.setdefault("dtype", "bfloat16")
        llm = vllm.LLM(model=str(folder), tokenizer=str(folder / TOKENIZER_SUBDIR), seed=seed,
                       gpu_memory_utilization=gpu_memory_utilization, **engine_kwargs)
        self._attach(llm, codec, getattr(vllm, "__version__", "unknown"))

    @classmethod
    def attach(cls, llm: Any, codec: TokenCodec, version: str = "unknown") -> VLLMRolloutEngine:
        """Wrap an engine built elsewhere (or a test's stand-in for one); nothing is written or started."""
        engine = cls.__new__(cls)
        engine._tmp = None
        engine._attach(llm, codec, version)
        return engine

    def _attach(self, llm: Any, codec: TokenCodec, version: str) -> None:
        self.llm, self.codec, self.version = llm, codec, version
        self._model = _engine_model(llm)
        if self._model is None and not hasattr(llm, "collective_rpc"):
            raise RuntimeError(
                f"vLLM {version}: no known way to load weights into the engine (none of {', '.join(MODEL_PATHS)} "
                "exists and LLM.collective_rpc is missing). Use a vLLM release with the V1 engine (>= 0.8), "
                "or --rollout-backend transformers"
            )

    def sync_weights(self, model: Any) -> int:
        """Copy ``model.state_dict()`` into the engine and drop its stale prefix cache; returns the tensor count.

        Names are the Hugging Face checkpoint names, which vLLM's ``load_weights`` maps to its own
        (fused q/k/v and gate/up projections, a tied ``lm_head`` skipped).
        """
        weights = list(model.state_dict().items())  # detached views of the learner's tensors, no copy
        if self._model is not None:
            self._model.load_weights(weights=iter(weights))
        else:
            cpu = [(name, tensor.to("cpu")) for name, tensor in weights]
            self.llm.collective_rpc(_load_weights_on_worker, args=(cpu,))
        # Cached KV blocks were computed with the old weights; a hit would mix two policies.
        if self.llm.reset_prefix_cache() is False:
            raise RuntimeError(f"vLLM {self.version} refused to reset its prefix cache (requests still running?); "
                               "weights were synced but cached prompts would use the old ones")
        return len(weights)

    def policy(self, sampling: SamplingConfig) -> VLLMPolicy:
        """A policy over this engine with the learner's codec (records identical to the transformers backend's)."""
        return VLLMPolicy.from_engine(self.llm, self.codec, sampling)

    def close(self) -> None:
        """Shut the engine down and free its GPU memory (best effort: vLLM keeps some process-wide state)."""
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        self.llm = self._model = None
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if self._tmp is not None:
            self._tmp.cleanup()


def _engine_model(llm: Any) -> Any | None:
    """The engine's ``nn.Module`` when it lives in this process (first of MODEL_PATHS that resolves), else None."""
    for path in MODEL_PATHS:
        target = llm
        try:
            for attr in path.split("."):
                target = getattr(target, attr)
        except AttributeError:
            continue
        if hasattr(target, "load_weights"):
            return target
    return None


def _load_weights_on_worker(worker: Any, weights: list[tuple[str, Any]]) -> None:
    """Run inside a vLLM worker by ``collective_rpc``: the worker's model loads ``weights`` in place."""
    worker.model_runner.model.load_weights(weights=weights)


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
