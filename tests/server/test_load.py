"""Finding the app named ``module:attribute``: the App itself, or one clear line saying what to change."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import trio_ws

ModuleMaker = Callable[[str], str]


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleMaker]:
    """Write a module into a fresh current directory; its (unique) name comes back."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    names: list[str] = []

    def make(source: str) -> str:
        name = f"app_{tmp_path.name.replace('-', '_')}_{len(names)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        names.append(name)
        return name

    yield make
    for name in names:
        sys.modules.pop(name, None)


def test_loads_the_app_from_the_current_directory(module: ModuleMaker) -> None:
    """``module:attribute`` imports the module from the current directory and returns its App."""
    name = module("import trio_ws\napp = trio_ws.App()\n")
    assert trio_ws.load_app(f"{name}:app") is sys.modules[name].app


def test_a_dotted_attribute_is_followed(module: ModuleMaker) -> None:
    """``module:holder.app`` reaches an App kept on another object."""
    name = module("import trio_ws\nclass holder:\n    app = trio_ws.App()\n")
    assert trio_ws.load_app(f"{name}:holder.app") is sys.modules[name].holder.app


@pytest.mark.parametrize("spec", ["myapp", "myapp:", ":app", ""])
def test_a_name_without_module_and_attribute_is_refused(spec: str) -> None:
    """APP must be module:attribute; anything else says so, with an example."""
    with pytest.raises(trio_ws.AppNotFound, match=r"must be module:attribute, such as myapp:app"):
        trio_ws.load_app(spec)


def test_a_missing_module_is_named(module: ModuleMaker) -> None:
    """A module that does not exist is named, with where it was looked for."""
    with pytest.raises(trio_ws.AppNotFound, match=r"^no module named 'no_such_module_here' \(looked in"):
        trio_ws.load_app("no_such_module_here:app")
    with pytest.raises(trio_ws.AppNotFound, match=r"^no module named 'no_such_package'"):
        trio_ws.load_app("no_such_package.app:app")


def test_a_missing_attribute_lists_the_apps_there(module: ModuleMaker) -> None:
    """A missing attribute is named, and the module's Apps are offered instead."""
    name = module("import trio_ws\nweb = trio_ws.App()\nadmin = trio_ws.App()\n")
    with pytest.raises(trio_ws.AppNotFound) as info:
        trio_ws.load_app(f"{name}:app")
    assert str(info.value) == f"module '{name}' has no attribute 'app'; its trio_ws Apps: admin, web"
    empty = module("x = 1\n")
    with pytest.raises(trio_ws.AppNotFound, match=r"has no attribute 'app'; it has no trio_ws.App$"):
        trio_ws.load_app(f"{empty}:app")


@pytest.mark.parametrize(
    "source, what",
    [
        ("async def app(ws): pass\n", "a function (app)"),
        ("import trio_ws\napp = trio_ws.App\n", "the class App"),
        ("app = 'hello'\n", "a str"),
    ],
)
def test_something_other_than_an_app_is_refused(module: ModuleMaker, source: str, what: str) -> None:
    """An attribute that is not an App says what it is instead."""
    name = module(source)
    with pytest.raises(trio_ws.AppNotFound) as info:
        trio_ws.load_app(f"{name}:app")
    assert str(info.value) == (
        f"{name}:app is {what}, not a trio_ws.App; name the App object (app = trio_ws.App())"
    )


def test_an_error_inside_the_module_is_the_apps_own(module: ModuleMaker) -> None:
    """An exception raised while importing the module, even a missing import of its own, is kept as the
    cause of AppImportError, so its traceback can be shown."""
    name = module("raise ValueError('bad config')\n")
    with pytest.raises(trio_ws.AppImportError, match=r"importing .* failed: ValueError: bad config") as info:
        trio_ws.load_app(f"{name}:app")
    assert isinstance(info.value.__cause__, ValueError)
    other = module("import no_such_dependency\n")
    with pytest.raises(trio_ws.AppImportError, match=r"ModuleNotFoundError: No module named 'no_such_dep"):
        trio_ws.load_app(f"{other}:app")
