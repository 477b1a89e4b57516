"""A small synthetic world shared by the data tests (about 0.1 s to generate)."""

from __future__ import annotations

import pytest

from mem1_gym.data.synthetic import World, WorldConfig, generate_world

SMALL = WorldConfig(n_passages=3000)


@pytest.fixture(scope="session")
def small_world() -> World:
    return generate_world(SMALL)
