"""Issue 19, 1c/1d: the learner's groups are explicit (one task, several reset seeds, the group id in
every record), and `mem1-agent train` runs one GRPO iteration on MEM1-WebShop-Text and MEM1-WebQA-1."""

from __future__ import annotations

import pytest
from mem1_agent import cli
from mem1_agent.train import learner
from mem1_agent.train.learner import LearnerConfig, group_specs


def test_group_specs_name_one_task_per_group_with_distinct_seeds():
    config = LearnerConfig(tasks_per_iteration=3, group_size=4, seed=1)
    specs = group_specs(50, config, iteration=2)
    assert [s.group for s in specs] == [g for g in range(3) for _ in range(4)]
    for group in range(3):
        members = specs[4 * group : 4 * group + 4]
        assert len({s.task_index for s in members}) == 1 and 0 <= members[0].task_index < 50
        assert len({s.seed for s in members}) == 4
    assert group_specs(50, config, iteration=2) == specs  # seeded: a resumed run draws the same tasks
    with pytest.raises(ValueError, match="no tasks"):
        group_specs(0, config, iteration=0)


@pytest.mark.parametrize("env_id", ["MEM1-WebShop-Text", "MEM1-WebQA-1"])
def test_train_one_grpo_iteration_on_webshop_and_webqa(env_id, tiny_model_dir, tmp_path, monkeypatch):
    collected = []
    real_collect = learner.collect

    def spy(*args, **kwargs):
        collected.extend(real_collect(*args, **kwargs))
        return collected

    monkeypatch.setattr(learner, "collect", spy)
    out = tmp_path / "run"
    args = ["train", "--env", env_id, "--model", str(tiny_model_dir), "--out", str(out), "--algo", "grpo",
            "--iterations", "1", "--tasks-per-iteration", "2", "--group-size", "2", "--concurrency", "2",
            "--max-new-tokens", "4", "--mini-batch-size", "2", "--micro-batch-size", "2", "--device", "cpu",
            "--rollout-backend", "transformers", "--env-kwarg", "max_turns=1"]
    assert cli.main(args) == 0
    assert (out / "trainer_state.json").is_file()
    assert sorted(t.group for t in collected) == [0, 0, 1, 1]
    for group in (0, 1):
        members = [t for t in collected if t.group == group]
        assert members[0].task_id and len({(t.task_id, t.prompt.text) for t in members}) == 1
