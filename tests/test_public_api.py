"""The public surface: ``loopml.__all__`` is sorted and names exactly what ``__init__`` defines."""

from __future__ import annotations

import ast
from pathlib import Path

import loopml


def names_bound_in_init() -> set[str]:
    """Public names the module body of loopml/__init__.py binds (imports, defs, assignments)."""
    tree = ast.parse(Path(loopml.__file__).read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if node.module == "__future__":
                    continue
                names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names.add(target.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_") or n == "__version__"}


def test_all_is_sorted_and_unique() -> None:
    assert loopml.__all__ == sorted(loopml.__all__)
    assert len(set(loopml.__all__)) == len(loopml.__all__)


def test_all_is_complete() -> None:
    assert set(loopml.__all__) == names_bound_in_init()


def test_every_exported_name_resolves() -> None:
    for name in loopml.__all__:
        assert getattr(loopml, name, None) is not None, name


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from loopml import *", namespace)
    namespace.pop("__builtins__", None)
    assert set(namespace) == set(loopml.__all__)


def test_errors_are_one_tree() -> None:
    errors = [
        getattr(loopml, n)
        for n in loopml.__all__
        if isinstance(getattr(loopml, n), type) and issubclass(getattr(loopml, n), BaseException)
    ]
    assert errors, "the error classes are public"
    for error in errors:
        assert issubclass(error, loopml.LoopMLError), error
    for error in (loopml.ContractViolation, loopml.SpecError, loopml.NotFound, loopml.Conflict):
        assert issubclass(error, loopml.InputError)
        assert error.exit_code == loopml.InputError.exit_code == 2
    assert issubclass(loopml.IntegrityError, loopml.StoreError)
