"""The paper's metrics, computed from the rollout records of every trajectory (not only correct ones).

Per trajectory (:class:`TrajectoryMetrics`):

* **EM, F1**: the env's final per-objective scores (``info["em"]``, ``info["f1"]``, scored by
  :mod:`mem1_gym.scoring`), summed over objectives (the paper's "EM count", 0…N) and averaged.
* **Peak tokens**: the largest ``n_p + n_o`` over turns, where ``n_p`` is the number of tokens of
  the context the turn read and ``n_o`` the number of tokens it generated, in the policy's tokenizer
  (for text policies, the counting tokenizer named in the record). Reported with the task prompt
  (what the model holds) and without it (the paper's convention: its eval never counts the prompt,
  reference/mem1.md §6.2).
* **Dependency** (attention cost): ``Σ_turns (2·n_p + n_o)·n_o / 2`` — every generated token
  attends to the ``n_p`` context tokens and to the tokens generated before it, so a turn costs
  ``Σ_{j<n_o} (n_p + j) ≈ n_p·n_o + n_o²/2``. This equals the released eval code's per-segment sum
  ``(c + ℓ/2)·ℓ`` (think and action segments summed give the same total). The paper's formula as
  transcribed, ``Σ(2·n_o + n_p)·n_o/2``, has the two counts swapped inside the bracket relative to
  that code; we follow the code, which the reference calls identical to the paper. Observation
  tokens are context (counted in the next turn's ``n_p``), never ``n_o``. With and without prompt.
* **Evidence recall**: per question, the fraction of its supporting passages that some search of
  the episode retrieved (the env's ``info["evidence"]``, synthetic world only): whether the agent
  found what it needed, separately from whether it then wrote the answer exactly.
* **Scores**: the env's final scores under its protocol's ``score_keys`` (``Trajectory.scores``):
  EM and F1 sums for the QA families, ``reward`` and ``success`` for WebShop, whose episodes have
  no per-question EM (its EM/F1 columns read n/a).
* **Turns**, **valid-action rate** (turns the env parsed as a valid action), **wall
  seconds** (reset to last step, as a user waits for it), and the generation and env seconds
  attributed to it.

Next to these, :class:`Summary` holds the ``paper_`` values: what MEM1's released eval script
computes from the same records (:mod:`mem1_agent.mem1_eval`; ``docs/metrics.md`` lists the
differences and why ours differ).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from statistics import fmean

from mem1_agent.mem1_eval import PaperMetrics
from mem1_agent.records import Trajectory


@dataclass(frozen=True)
class TrajectoryMetrics:
    """Metrics of one trajectory."""

    env_id: str
    task_id: str
    context_strategy: str
    em: tuple[float, ...]
    f1: tuple[float, ...]
    evidence: tuple[float, ...]
    """Per question, supporting-passage recall (empty when the env does not report it)."""
    em_sum: float
    f1_sum: float
    peak_tokens: int
    peak_tokens_no_prompt: int
    dependency: float
    dependency_no_prompt: float
    turns: int
    valid_turns: int
    wall_seconds: float
    gen_seconds: float
    env_seconds: float
    context_tokens: tuple[int, ...]
    """Context tokens read at each turn (prompt included): the per-turn curve of the plot."""
    scores: dict[str, float] = field(default_factory=dict)
    """The env's final scores by its protocol's score keys (``Trajectory.scores``)."""

    @property
    def n_objectives(self) -> int:
        return len(self.em)

    @property
    def valid_action_rate(self) -> float:
        return self.valid_turns / self.turns if self.turns else 0.0


def turn_dependency(n_p: int, n_o: int) -> float:
    """Attention cost of one turn: ``(2·n_p + n_o)·n_o / 2`` (see the module docstring)."""
    return (2 * n_p + n_o) * n_o / 2


def trajectory_metrics(trajectory: Trajectory) -> TrajectoryMetrics:
    peak = peak_np = 0
    dependency = dependency_np = 0.0
    for turn in trajectory.turns:
        n_p, n_o = turn.context_tokens, len(turn.generated_ids)
        n_p_no_prompt = n_p - turn.prompt_tokens
        peak, peak_np = max(peak, n_p + n_o), max(peak_np, n_p_no_prompt + n_o)
        dependency += turn_dependency(n_p, n_o)
        dependency_np += turn_dependency(n_p_no_prompt, n_o)
    return TrajectoryMetrics(
        env_id=trajectory.env_id,
        task_id=trajectory.task_id,
        context_strategy=trajectory.context_strategy,
        em=trajectory.em,
        f1=trajectory.f1,
        evidence=trajectory.evidence,
        em_sum=float(sum(trajectory.em)),
        f1_sum=float(sum(trajectory.f1)),
        peak_tokens=peak,
        peak_tokens_no_prompt=peak_np,
        dependency=dependency,
        dependency_no_prompt=dependency_np,
        turns=len(trajectory.turns),
        valid_turns=sum(turn.valid_action for turn in trajectory.turns),
        wall_seconds=trajectory.wall_seconds,
        gen_seconds=sum(turn.gen_seconds for turn in trajectory.turns),
        env_seconds=sum(turn.env_seconds for turn in trajectory.turns),
        context_tokens=tuple(turn.context_tokens for turn in trajectory.turns),
        scores=dict(trajectory.scores),
    )


@dataclass(frozen=True)
class Summary:
    """Means over trajectories of one (env, context strategy) cell."""

    env_id: str
    context_strategy: str
    n: int
    """Trajectories."""
    em_sum: float
    """Mean EM count (0…N), the paper's EM."""
    f1_sum: float
    em_mean: float
    """Mean per-objective EM (EM count / N)."""
    f1_mean: float
    em_per_objective: tuple[float, ...]
    """Mean EM of question 1, 2, …, N."""
    f1_per_objective: tuple[float, ...]
    evidence: float | None
    """Mean supporting-passage recall over questions and trajectories (None when the env reports none)."""
    peak_tokens: float
    """Mean over trajectories of each one's peak, prompt included."""
    peak_tokens_max: int
    peak_tokens_no_prompt: float
    dependency: float
    dependency_no_prompt: float
    turns: float
    valid_action_rate: float
    """Valid turns / all turns, pooled over trajectories."""
    wall_seconds: float
    """Mean wall time per trajectory."""
    paper_em_sum: float | None = None
    """Mean EM count by the rules of MEM1's eval script (no article removal, 0 on an answer-count
    mismatch, turns 0-9 only); None when not computed (no gold answers, e.g. WebShop)."""
    paper_f1_sum: float | None = None
    """Mean summed F1 by those rules (F1 over token sets)."""
    paper_peak_tokens: float | None = None
    """The script's mean peak tokens (prompt never counted, the think counted twice), over the
    ``paper_peak_kept`` trajectories its rollout-time substring match keeps; None when it keeps none."""
    paper_peak_kept: int = 0
    """Trajectories in ``paper_peak_tokens`` (the script leaves out those whose match is 0)."""
    paper_dependency: float | None = None
    """The script's mean dependency, ``Σ (c + ℓ // 2)·ℓ`` over think and response segments."""
    scores: dict[str, float] = field(default_factory=dict)
    """Mean of each protocol score key over the trajectories that report it (WebShop: reward, success)."""

    @property
    def evidence_text(self) -> str:
        return "n/a" if self.evidence is None else f"{self.evidence:.1%}"

    @property
    def em_text(self) -> str:
        """The EM count, or n/a for an env without per-question answers (WebShop)."""
        return f"{self.em_sum:.3f}" if self.em_per_objective else "n/a"

    @property
    def f1_text(self) -> str:
        return f"{self.f1_sum:.3f}" if self.f1_per_objective else "n/a"

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(metrics: Sequence[TrajectoryMetrics], paper: Sequence[PaperMetrics] = ()) -> Summary:
    """Means over ``metrics``; ``paper`` (the same trajectories by MEM1's eval rules) fills the ``paper_`` fields."""
    if not metrics:
        raise ValueError("no trajectories to summarise; run at least one episode")
    n_obj = max(m.n_objectives for m in metrics)
    per_obj = [m for m in metrics if m.n_objectives == n_obj]
    with_evidence = [m for m in metrics if m.evidence]
    return Summary(
        env_id=metrics[0].env_id,
        context_strategy=metrics[0].context_strategy,
        n=len(metrics),
        em_sum=fmean(m.em_sum for m in metrics),
        f1_sum=fmean(m.f1_sum for m in metrics),
        em_mean=fmean(m.em_sum / max(1, m.n_objectives) for m in metrics),
        f1_mean=fmean(m.f1_sum / max(1, m.n_objectives) for m in metrics),
        em_per_objective=tuple(fmean(m.em[q] for m in per_obj) for q in range(n_obj)),
        f1_per_objective=tuple(fmean(m.f1[q] for m in per_obj) for q in range(n_obj)),
        evidence=fmean(fmean(m.evidence) for m in with_evidence) if with_evidence else None,
        peak_tokens=fmean(m.peak_tokens for m in metrics),
        peak_tokens_max=max(m.peak_tokens for m in metrics),
        peak_tokens_no_prompt=fmean(m.peak_tokens_no_prompt for m in metrics),
        dependency=fmean(m.dependency for m in metrics),
        dependency_no_prompt=fmean(m.dependency_no_prompt for m in metrics),
        turns=fmean(m.turns for m in metrics),
        valid_action_rate=sum(m.valid_turns for m in metrics) / max(1, sum(m.turns for m in metrics)),
        wall_seconds=fmean(m.wall_seconds for m in metrics),
        scores=_mean_scores(metrics),
        **_paper_fields(paper),
    )


def _mean_scores(metrics: Sequence[TrajectoryMetrics]) -> dict[str, float]:
    keys = dict.fromkeys(key for m in metrics for key in m.scores)
    return {key: fmean(m.scores[key] for m in metrics if key in m.scores) for key in keys}


def _paper_fields(paper: Sequence[PaperMetrics]) -> dict:
    """The ``paper_`` means, each over the trajectories MEM1's eval script averages that value over."""
    if not paper:
        return {}
    peaks = [p.peak_tokens for p in paper if p.peak_tokens is not None]
    dependencies = [p.dependency for p in paper if p.dependency is not None]
    return {
        "paper_em_sum": fmean(p.em for p in paper),
        "paper_f1_sum": fmean(p.f1 for p in paper),
        "paper_peak_tokens": fmean(peaks) if peaks else None,
        "paper_peak_kept": len(peaks),
        "paper_dependency": fmean(dependencies) if dependencies else None,
    }
