"""Adapters that let the trainers people already run drive mem1-gym envs (issue 22).

Each submodule imports its trainer lazily and is installed by its own extra:
``mem1_gym.integrations.trl`` (``pip install -e ".[trl]"``), ``.verl`` (``".[verl]"``, its own venv: verl
pins its own transformers), ``.skyrl`` (``".[skyrl]"``) and ``.verifiers`` (``".[verifiers]"``).
:mod:`mem1_gym.integrations.tasks` holds what they share: the task rows of a split and a text episode.
"""
