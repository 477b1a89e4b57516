"""The MEM1 protocol: the one source of truth for tags, prompts, hints, parsing and normalisation.

Every other part of mem1-gym (envs, the oracle, the agent, the evaluation) imports these names
from here. The original MEM1 code had three divergent copies of this logic (different hint wording
in training and inference, opposite search/answer precedence, three definitions of EM;
reference/mem1.md §8, R1), so nothing outside this package may re-implement a tag, a template or
a normaliser. One module per task family, all re-exported here:

* :mod:`mem1_gym.protocol.base` — what the families share: the tags, the one turn parser
  (:class:`TurnGrammar`) and :class:`EnvProtocol`, the object an agent drives an env through
  (``env.unwrapped.protocol``: stop strings, parser, memory tags, tasks, score keys).
* :mod:`mem1_gym.protocol.qa` — tags, the QA turn ``<think>…</think><search>…</search>`` or
  ``<answer>a1; a2</answer>``, the ``<information>`` observation, the turns-left hint, the parser,
  answer splitting and SQuAD-style normalisation.
* :mod:`mem1_gym.protocol.webshop` — ``<think>``, ``<summary>``, ``<answer>search[...]|click[...]</answer>``
  and the ``<state>`` observation.
* :mod:`mem1_gym.protocol.web` — the QA turn plus ``<open>url</open>`` and web-result rendering.
"""

from mem1_gym.protocol.base import *  # noqa: F401,F403
from mem1_gym.protocol.qa import *  # noqa: F401,F403
from mem1_gym.protocol.web import *  # noqa: F401,F403
from mem1_gym.protocol.webshop import *  # noqa: F401,F403
