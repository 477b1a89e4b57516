"""Missing extras: every CLI command and gym.make that needs one names the pip line (issue 24)."""

from __future__ import annotations

import sys

import gymnasium as gym
import pytest

import mem1_gym  # noqa: F401
from mem1_gym import cli as gym_cli
from mem1_gym.extras import MissingExtraError, install_line, require


def _hide(monkeypatch, *modules: str) -> None:
    for name in modules:  # None in sys.modules makes `import name` raise ModuleNotFoundError
        monkeypatch.setitem(sys.modules, name, None)


def _agent_main(argv):
    from mem1_agent import cli as agent_cli

    return agent_cli.main(argv)


@pytest.mark.parametrize("hidden", ["werkzeug", "flask", "selenium"])
def test_webshop_make_names_the_web_extra(monkeypatch, hidden):
    _hide(monkeypatch, hidden)
    with pytest.raises(ModuleNotFoundError, match=r'MEM1-WebShop .*needs ' + hidden + r'.*pip install "mem1-gym\[web\]"'):
        gym.make("MEM1-WebShop")


@pytest.mark.parametrize(("main", "argv", "hidden", "extra"), [
    (gym_cli.main, ["serve-retriever", "--port", "0"], "fastapi", "web"),
    (gym_cli.main, ["serve-shop", "--port", "0"], "werkzeug", "web"),
    (_agent_main, ["demo"], "transformers", "agent"),
    (_agent_main, ["eval", "--policy", "oracle"], "torch", "agent"),
    (_agent_main, ["serve", "--model", "nowhere"], "fastapi", "web"),
    (_agent_main, ["train", "--help"], "tyro", "agent"),
])
def test_cli_commands_name_the_extra(monkeypatch, capsys, main, argv, hidden, extra):
    _hide(monkeypatch, hidden)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"needs {hidden}" in err and install_line(extra) in err and "Traceback" not in err


def test_require_passes_present_modules_and_rejects_unknown_extras():
    require("web", "json", "re", purpose="a test")
    with pytest.raises(MissingExtraError) as caught:
        require("agent", "json", "no_such_module_for_mem1", purpose="a test")
    assert caught.value.name == "no_such_module_for_mem1" and isinstance(caught.value, ImportError)
    with pytest.raises(ValueError, match="unknown extra 'gpu'"):
        install_line("gpu")


@pytest.mark.parametrize("main", [gym_cli.main, _agent_main])
def test_version_and_plain_help(capsys, main):
    from importlib.metadata import version

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip().endswith(version("mem1-gym"))
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "``" not in text and ":class:" not in text and "usage:" in text


def test_plain_text_strips_rst_markup():
    assert gym_cli.plain_text("``mem1-gym`` runs :class:`~x.Env` and :func:`make`") == "mem1-gym runs x.Env and make"


def test_extras_doctest():
    import doctest

    from mem1_gym import extras

    assert doctest.testmod(extras).failed == 0
