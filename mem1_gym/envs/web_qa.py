"""Multi-objective web QA: ``MEM1-WebQA-{1,2,4,8,16}``, answered through a web search API."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any


from mem1_gym import protocol
from mem1_gym.data.tasks import Task
from mem1_gym.envs.qa_base import QAEnvBase
from mem1_gym.envs.qa_common import QAConfig
from mem1_gym.protocol import WebActionType
from mem1_gym.retrieval.build import BACKENDS
from mem1_gym.web.client import ClientConfig, WebError
from mem1_gym.web.miniweb import MiniWebConfig
from mem1_gym.web.providers import PROVIDERS, MiniWebProvider, SearchProvider

_ACTION_NAMES = {WebActionType.SEARCH: "search", WebActionType.OPEN: "open", WebActionType.ANSWER: "answer",
                 WebActionType.INVALID: "invalid"}
_NO_ACTION = protocol.ParsedWebAction(WebActionType.INVALID, "", None, 0, "")  # what reset() reports


@dataclass(frozen=True)
class WebQAConfig(QAConfig):
    """Everything that defines a web QA environment (all ``gym.make`` kwargs): :class:`QAConfig`'s fields
    plus the web's, with web defaults for ``k``, ``reward`` and ``retrieval_timeout``."""

    k: int = 5
    """Results per search (MEM1's Google launcher used 5; its Serper runs 10: pass k=10)."""
    reward: str = "f1"
    """Terminal reward: "f1" (summed per-objective F1, the paper's web QA metric) or "em" (EM count)."""
    retrieval_timeout: float = 10.0
    """Seconds to wait for the provider's connection and, separately, for each read (searches and pages)."""
    search_provider: Any = "miniweb"
    """"miniweb" (local, offline, reproducible), "serper" (key in SERPER_API_KEY), "brave" (key in
    BRAVE_API_KEY), or a :class:`~mem1_gym.web.providers.SearchProvider` instance."""
    search_url: str | None = None
    """miniweb: a running ``mem1-gym serve-miniweb`` (None: one is started in this process and shared);
    serper/brave: the API endpoint (None: the public one)."""
    allow_open: bool = False
    """Enable ``<open>url</open>`` (off: the paper's setting, titles, URLs and snippets only)."""
    page_chars: int = 2000
    """Characters of page text an ``<open>`` shows (the rest is cut, and the observation says so)."""
    page_links: int = 10
    """Links of the page listed after its text (to open next)."""
    max_page_bytes: int = 1 << 20
    """Bytes of a page read at most: larger pages are cut, never read whole."""
    retries: int = 2
    """Extra attempts after a timeout, a connection error, HTTP 429 or 5xx."""
    backoff: float = 0.5
    """urllib3's backoff factor: the first retry goes at once, the n-th after backoff x 2^(n-1) s, at most
    8 s (also for Retry-After)."""
    rate_limit: float | None = None
    """Requests per second of this env (searches and pages); None: the provider's default
    (unlimited for miniweb, 5/s serper, 1/s brave)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.evidence_bonus:
            raise ValueError("evidence_bonus needs known supporting passages: MEM1-MultiHopQA only, not MEM1-WebQA")
        if self.prompt_format == "mem1" and self.allow_open:
            raise ValueError("prompt_format='mem1' shows MEM1's web QA text, which has no <open> action (and no URLs); "
                             "pass allow_open=False, or prompt_format='mem1gym' to open pages")
        name = self.search_provider
        if not isinstance(name, SearchProvider) and name not in PROVIDERS:
            raise ValueError(f"search_provider must be one of {sorted(PROVIDERS)} or a SearchProvider, got {name!r}")
        if self._starts_miniweb and self.retriever not in BACKENDS:
            raise ValueError(
                f"the mini-web searches with a local backend, one of {BACKENDS}; got retriever={self.retriever!r}. "
                f"To use another server, run `mem1-gym serve-miniweb` and pass search_url="
            )
        if name == "miniweb" and self.k > MiniWebConfig.max_results:
            raise ValueError(f"k must be <= {MiniWebConfig.max_results} with the mini-web (its cap on results per "
                             f"search, as Serper's), got {self.k}")
        if self.page_chars < 1 or self.page_links < 0 or self.max_page_bytes < 1024:
            raise ValueError(
                f"need page_chars >= 1, page_links >= 0 and max_page_bytes >= 1024; got {self.page_chars}, "
                f"{self.page_links}, {self.max_page_bytes}"
            )
        ClientConfig(self.retrieval_timeout, self.retries, self.backoff, rate_limit=self.rate_limit)  # its checks

    @property
    def _starts_miniweb(self) -> bool:
        return self.search_provider == "miniweb" and self.search_url is None

    def _check_questions_have_a_corpus(self) -> None:
        # Only a mini-web started here searches corpus_path; other providers search their own web.
        if self._starts_miniweb:
            super()._check_questions_have_a_corpus()


class WebQAEnv(QAEnvBase):
    """N questions answered in one episode by searching the web (or the local mini-web), MEM1-style.

    ## Description
    MEM1's web QA (Zhou, Qu et al., 2025; the paper evaluates it with Serper and F1): the
    multi-objective QA task of ``MEM1-MultiHopQA-N`` (same composition, splits and data), but a
    search returns web results, title, URL and snippet, from a search provider. The offline
    default is the *mini-web*: a real HTTP server on 127.0.0.1 that serves every corpus passage
    (the synthetic world, or any wiki-18-format corpus) as a linked HTML page and answers searches
    in Serper's JSON format; it starts with the first env of a process and serves all of them.
    Its pages appear at ``http://miniweb.test/wiki/<id>`` whatever port the server got, so the same
    seed gives the same observations in every process.
    ``search_provider="serper"`` or ``"brave"`` searches the real web with a key from the environment.

    ## Action Space
    :class:`~mem1_gym.core.UnicodeText`: any string. A model turn ``<think>state</think>`` followed by
    ``<search>query</search>``, ``<answer>a1; a2</answer>`` or, with ``allow_open=True``,
    ``<open>url</open>`` (the first complete action block counts), or a bare ``search[q]``,
    ``open[url]``, ``answer[a1; a2]``. Anything else is an invalid action (never an exception).
    ``<open>`` is off by default, as in the paper (snippets only); when off it is an invalid action.
    With the mini-web only its own pages open; with a live provider only public http(s) hosts
    (``file://``, loopback and private addresses are refused).

    ## Observation Space
    :class:`~mem1_gym.core.UnicodeText`. After ``reset``: the task prompt. After a search:
    ``"\\n\\n<information>[HINT]...[/HINT]\\n\\nDoc 1(Title: X)\\nURL: http://...\\nsnippet\\n\\nDoc 2 ..."``
    (one blank line between results, closed by ``"</information>\\n\\n"``).
    After an open: the same block holding the page's URL, title, main text (navigation, scripts and
    styles removed, cut to ``page_chars``) and links. After a failed search or open, or an invalid
    action: the block with a message saying what went wrong. After the answer: ``""``.

    ## Rewards
    0 on every step but the last (minus ``invalid_action_penalty`` for an invalid turn). On the
    answer: ``reward_scale`` x the sum over questions of token F1 (``reward="f1"``, the default and
    the paper's web QA metric) or x the EM count (``reward="em"``). EM is always in ``info``.

    ## Starting State
    A task drawn uniformly from the split by the seeded generator, or ``options["task_index"]``.
    With the mini-web the same seed gives the same observations; live providers do not (their
    instances' ``spec.nondeterministic`` is True).

    ## Episode End
    * Termination: the agent answers (a valid ``<answer>`` block).
    * Truncation: ``max_turns`` turns were used without an answer.

    ## Information
    Every step: ``turn``, ``turns_left``, ``max_turns``, ``task_id``, ``task_index``, ``n_questions``,
    ``action_type`` ("search", "open", "answer", "invalid"; "" after reset), ``valid_action``,
    ``error`` (why the action was invalid or failed; ""), ``query``, ``url`` (the page asked for),
    ``has_think``, ``consumed_chars``, ``provider`` (its name), ``result_urls`` (URLs of the results
    shown), ``search_error`` (the provider failed this search; ""), ``open_error`` (the page was
    refused or failed; ""), ``page_cut`` (the page text was cut), ``injected`` (the exact text the env
    injected: the observation). On the last step also: ``em``, ``f1`` (per question), ``em_sum``,
    ``f1_sum``, ``n_correct``, ``success``, ``answered``, ``n_answers``, ``answer_count_mismatch``.

    ## Arguments
    See :class:`WebQAConfig`; every field is a ``gym.make`` kwarg, e.g.
    ``gym.make("MEM1-WebQA-4", allow_open=True)`` or ``gym.make("MEM1-WebQA-4", search_provider="serper",
    qa_path="nq_test.jsonl")``. Live providers need real questions (``qa_path``): the synthetic world's
    entities are not on the web.
    ``prompt_format="mem1"`` (default ``"mem1gym"``) shows the text MEM1's checkpoint was evaluated on:
    the prompt of ``MEM1-MultiHopQA``'s ``"mem1"`` format, results as ``Doc 1(Title: "X") snippet`` lines
    (no URL, as MEM1's search servers returned them) in MEM1's ``<information>`` block; it excludes
    ``allow_open=True``.

    ## Example
    >>> import gymnasium as gym, mem1_gym
    >>> env = gym.make("MEM1-WebQA-2", allow_open=True)
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step("<think>start</think><search>Girostia capital</search>")
    >>> "URL: http://miniweb.test/wiki/" in obs, info["search_error"], len(info["result_urls"])
    (True, '', 5)
    >>> info = env.step(f"<open>{info['result_urls'][0]}</open>")[4]
    >>> info["action_type"], info["open_error"]
    ('open', '')
    >>> env.step("<open>file:///etc/passwd</open>")[4]["open_error"][:17]
    'refused to open f'
    >>> env.close()
    """

    config_cls = WebQAConfig
    family_protocol = protocol.WEBQA_PROTOCOL
    _spec = None

    def _open_backend(self, corpus_path: str | None) -> None:
        self._provider, self._owns_provider = _make_provider(self.config, corpus_path)
        if self._provider.live and self.config.qa_path is None:
            warnings.warn(
                f"search_provider={self._provider.name!r} searches the real web, but the questions are the "
                f"synthetic world's, whose entities are invented; pass qa_path= real questions "
                f"(a FlashRAG jsonl such as NQ or HotpotQA)",
                stacklevel=3,
            )

    def _close_backend(self) -> None:
        if self._owns_provider:
            self._provider.close()

    def _prompt(self, task: Task) -> str:
        return protocol.webqa_prompt(task.questions, self.max_turns, self.config.allow_open)

    def _idle_info(self) -> dict:
        return self._web_info(_NO_ACTION)

    @property
    def spec(self):
        return self._spec

    @spec.setter
    def spec(self, value) -> None:
        # Registered ids say deterministic (the mini-web is the default); an instance on a live
        # provider is not, and its spec says so (gym.make assigns the spec after __init__).
        if value is not None and self._provider.live and not value.nondeterministic:
            value = dataclasses.replace(value, nondeterministic=True)
        self._spec = value

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        turns_left = self._begin_step()
        parsed = protocol.parse_web_action(action)
        if parsed.type is WebActionType.OPEN and not self.config.allow_open:
            error = "<open> is off in this environment (make it with allow_open=True)"
            parsed = dataclasses.replace(parsed, type=WebActionType.INVALID, content="", error=error)
        info = self._info(action_type=_ACTION_NAMES[parsed.type], valid=parsed.valid, error=parsed.error,
                          has_think=parsed.think is not None, consumed=parsed.end)
        info.update(self._web_info(parsed))
        if parsed.type is WebActionType.ANSWER:
            return self._end_step("", self._answer(parsed.content, info), True, info)
        reward = 0.0
        if parsed.type is WebActionType.SEARCH:
            body = self._search(parsed.content, info)
        elif parsed.type is WebActionType.OPEN:
            body = self._open(parsed.content, info)
        else:
            body = f"{protocol.web_invalid_action_message(self.config.allow_open)} ({parsed.error})"
            reward = -self.config.invalid_action_penalty
        obs = self._observation(turns_left, body)
        return self._end_step(obs, reward, False, info)

    @property
    def provider(self) -> SearchProvider:
        return self._provider

    def _search(self, query: str, info: dict) -> str:
        try:
            results = self._provider.search(query, self.config.k)
        except WebError as err:
            if self.config.on_retrieval_error == "raise":
                raise
            info["error"] = info["search_error"] = str(err)
            return protocol.search_failed_message(str(err))
        info["result_urls"] = [r.url for r in results]
        if not results:
            return protocol.EMPTY_RESULTS_MESSAGE
        if self.config.prompt_format == "mem1":
            return protocol.render_web_results_mem1(results)
        return protocol.render_web_results(results)

    def _open(self, url: str, info: dict) -> str:
        try:
            page = self._provider.open(
                url, max_bytes=self.config.max_page_bytes, max_chars=self.config.page_chars,
                max_links=self.config.page_links,
            )
        except WebError as err:
            info["error"] = info["open_error"] = str(err)
            return protocol.open_failed_message(url, str(err))
        info["page_cut"] = page.cut
        return protocol.render_page(page.url, page.title, page.text, page.links, page.cut)

    def _web_info(self, parsed: protocol.ParsedWebAction) -> dict:
        return {
            "query": parsed.content if parsed.type is WebActionType.SEARCH else "",
            "url": parsed.content if parsed.type is WebActionType.OPEN else "",
            "provider": self._provider.name,
            "result_urls": [],
            "search_error": "",
            "open_error": "",
            "page_cut": False,
        }


def _make_provider(config: WebQAConfig, corpus_path: str | None) -> tuple[SearchProvider, bool]:
    """The env's provider, and whether the env owns it (closes it). Providers hold the env's HTTP
    session and rate limit; the mini-web server they talk to is shared by the process."""
    spec = config.search_provider
    if isinstance(spec, SearchProvider):
        return spec, False
    provider_cls = PROVIDERS[spec]
    rate = config.rate_limit if config.rate_limit is not None else provider_cls.default_rate_limit
    client = ClientConfig(config.retrieval_timeout, config.retries, config.backoff, rate_limit=rate)
    if provider_cls is MiniWebProvider:
        url = config.search_url
        if url is None:
            from mem1_gym.web.miniweb import MiniWebConfig
            from mem1_gym.web.server import shared_server

            url = shared_server(MiniWebConfig(corpus_path, config.retriever, config.index_dir)).url
        return MiniWebProvider(client, url), True
    return provider_cls(client, endpoint=config.search_url), True
