"""WebShop (Yao et al., 2022) for mem1-gym: the shop model, a real web site and two envs.

* ``MEM1-WebShop`` (:mod:`~mem1_gym.webshop.env_browser`): Selenium + headless Chromium against the
  Flask site, started by the env itself.
* ``MEM1-WebShop-Text`` (:mod:`~mem1_gym.webshop.env_text`): the same pages rendered in process.

Modules: ``catalog`` (products, streamed loading), ``generate`` (the embedded default),
``goals``, ``reward`` (WebShop's formula), ``search`` (BM25), ``shop``, ``pages`` (page model,
HTML and text), ``site`` (sessions and router), ``server`` (Flask), ``oracle``, ``cli``
(``mem1-gym serve-shop``). Nothing heavy is imported here.
"""
