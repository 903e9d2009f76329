"""The error boundary around user code: its exceptions come out named by the step."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from loopml.errors import InputError, LoopMLError, UserCodeError


@contextmanager
def user_code(step: str) -> Iterator[None]:
    """Run user code; re-raise what it raises as UserCodeError naming ``step``.

    loopml's own errors pass through unchanged, so a transform that reads a missing
    dataset still reports NotFound.
    """
    try:
        yield
    except LoopMLError:
        raise
    except Exception as exc:
        raise UserCodeError(f"{step} raised {type(exc).__name__}: {exc}") from exc


@contextmanager
def importing(module_name: str, step: str | None = None) -> Iterator[None]:
    """Import user code; a missing module is an InputError, code that raises a UserCodeError."""
    where = f"{step}: " if step else ""
    try:
        yield
    except LoopMLError:
        raise
    except ImportError as exc:
        raise InputError(
            f"{where}cannot import module {module_name!r}: {exc}",
            hint="is it on PYTHONPATH, or in the spec's folder?",
        ) from exc
    except Exception as exc:  # importing user code runs it
        raise UserCodeError(
            f"{where}importing {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from exc


def split_path(path: str) -> tuple[str, str]:
    """``module:function`` (or ``module.function``) as (module, function).

    Raises:
        InputError: the path is malformed.
    """
    module_name, sep, attribute = path.partition(":")
    if not sep:
        module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise InputError(
            f"{path!r} is not module:function", hint="for example mypkg.features:add_ratios"
        )
    return module_name, attribute


def function_of(module: Any, attribute: str, step: str | None = None) -> Callable[..., Any]:
    """The function ``attribute`` of an imported module."""
    function = getattr(module, attribute, None)
    if not callable(function):
        where = f"{step}: " if step else ""
        raise InputError(f"{where}{module.__name__!r} has no function {attribute!r}")
    return function


def load_function(path: str) -> Callable[..., Any]:
    """Import ``module:function`` (or ``module.function``) and return the function.

    Raises:
        InputError: the path is malformed, or the module or function does not exist.
        UserCodeError: importing the module raised.
    """
    module_name, attribute = split_path(path)
    with importing(module_name):
        module = importlib.import_module(module_name)
    return function_of(module, attribute)
