"""Web QA plumbing: the local mini-web, search providers, and page opening (issue 6).

* :mod:`mem1_gym.web.miniweb` — the site model: corpus passages as linked pages, Serper-style search.
* :mod:`mem1_gym.web.server` — the mini-web over HTTP (``mem1-gym serve-miniweb``, or shared in process).
* :mod:`mem1_gym.web.providers` — one interface over the mini-web, Serper and Brave Search.
* :mod:`mem1_gym.web.client` — timeouts, retries with backoff, the per-env rate limit, secret redaction.
* :mod:`mem1_gym.web.fetch` — which URLs may be opened, and capped streaming reads with charset handling.
* :mod:`mem1_gym.web.extract` — the main text of an HTML page.

The env is :class:`mem1_gym.envs.web_qa.WebQAEnv` (``gym.make("MEM1-WebQA-4")``). Nothing is
imported here, so ``import mem1_gym.web.extract`` does not pull in ``requests``.
"""
