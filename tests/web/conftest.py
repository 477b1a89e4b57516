"""Fixtures of the web QA tests (the fake web server itself is in webqa_fakeweb.py)."""

import pytest
from webqa_fakeweb import FakeWeb


@pytest.fixture
def fake_web():
    web = FakeWeb()
    yield web
    web.stop()
