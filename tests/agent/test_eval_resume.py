"""Eval resume after a kill mid-write (issue 21, item 4): a torn last line is cut away and its episode
replayed, even when the cut falls inside a multi-byte character; a corrupt line with records after it
is an error naming the file and line; every record is fsynced."""

from __future__ import annotations

import logging
import os

import pytest
from mem1_agent.eval import EvalConfig, record_path, run_eval
from mem1_agent.records import read_jsonl, write_jsonl

# Non-ASCII on purpose: "é" is 2 bytes in UTF-8, "東" 3, so a kill can cut inside either.
ANSWER = "<think>café 東京</think>\n<answer>café; 東京</answer>"
ENV = "MEM1-MultiHopQA-2"


def evaluate(out, policy):
    config = EvalConfig(env_id=ENV, episodes=4, concurrency=2, split="validation", out=out)
    run_eval(config, policy, progress=False)
    return record_path(out, ENV, "mem1")


def episodes(path):
    """What an episode is, without wall-clock timings: task, seed and every text the policy and env produced."""
    return sorted((t.task_id, t.seed, tuple((turn.generated_text, turn.observation.text) for turn in t.turns), t.em)
                  for t in read_jsonl(path))


@pytest.fixture
def uninterrupted(tmp_path_factory, script_policy):
    path = evaluate(tmp_path_factory.mktemp("uninterrupted"), script_policy([ANSWER]))
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) == 4 and "é" in lines[2].decode() and "東" in lines[2].decode()
    return path, lines


def cut(line: bytes, where: str) -> bytes:
    """``line`` cut by a kill: mid-ASCII, or after the first byte of "é" / of "東"."""
    if where == "ascii":
        return line[: len(line) // 2]
    return line[: line.index(where.encode()) + 1]


@pytest.mark.parametrize("where", ["ascii", "é", "東"])
def test_a_torn_last_line_is_cut_and_its_episode_replayed(tmp_path, uninterrupted, script_policy, where, caplog):
    path, lines = uninterrupted
    torn = record_path(tmp_path, ENV, "mem1")
    torn.write_bytes(b"".join(lines[:2]) + cut(lines[2], where))
    with caplog.at_level(logging.WARNING, logger="mem1_agent.eval"):
        evaluate(tmp_path, script_policy([ANSWER]))
    dropped = len(cut(lines[2], where))
    assert f"({dropped} bytes" in caplog.text and "replayed" in caplog.text
    data = torn.read_bytes()
    assert data.endswith(b"\n") and len(data.splitlines()) == 4
    assert episodes(torn) == episodes(path)


def test_a_torn_line_an_older_version_appended_after_is_cut_when_last(tmp_path, uninterrupted, script_policy):
    # The old resume appended a whole record onto the fragment: "fragment{record}\n" as the last line.
    path, lines = uninterrupted
    torn = record_path(tmp_path, ENV, "mem1")
    torn.write_bytes(b"".join(lines[:2]) + cut(lines[3], "é") + lines[2])
    evaluate(tmp_path, script_policy([ANSWER]))
    assert len(torn.read_bytes().splitlines()) == 4 and episodes(torn) == episodes(path)


def test_a_corrupt_line_followed_by_records_names_file_line_and_fix(tmp_path, uninterrupted, script_policy):
    _, lines = uninterrupted
    torn = record_path(tmp_path, ENV, "mem1")
    before = lines[0] + cut(lines[1], "東") + lines[2] + lines[3]
    torn.write_bytes(before)
    with pytest.raises(ValueError, match=rf"{torn.name}:2 .*delete line 2"):
        evaluate(tmp_path, script_policy([ANSWER]))
    assert torn.read_bytes() == before  # nothing dropped or appended


def test_every_record_is_flushed_and_fsynced(tmp_path, uninterrupted, monkeypatch):
    path, _ = uninterrupted
    synced = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_size)  # the bytes on disk when fsync was asked: one more line each time
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    copy = tmp_path / "copy.jsonl"
    write_jsonl(copy, read_jsonl(path))
    sizes = [len(line) for line in copy.read_bytes().splitlines(keepends=True)]
    assert synced == [sum(sizes[: k + 1]) for k in range(len(sizes))]
