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


def load_function(path: str) -> Callable[..., Any]:
    """Import ``module:function`` (or ``module.function``) and return the function.

    Raises:
        InputError: the path is malformed, or the module or function does not exist.
    """
    module_name, sep, attribute = path.partition(":")
    if not sep:
        module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise InputError(
            f"{path!r} is not module:function", hint="for example mypkg.features:add_ratios"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(
            f"cannot import module {module_name!r}: {exc}",
            hint="is it on PYTHONPATH (or in the current folder)?",
        ) from exc
    except Exception as exc:  # importing user code runs it
        raise UserCodeError(
            f"importing {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    function = getattr(module, attribute, None)
    if not callable(function):
        raise InputError(f"{module_name!r} has no function {attribute!r}")
    return function
