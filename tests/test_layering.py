"""The dependency direction: envs/ and mbrl_sam/ at the bottom, agents/ above them, scripts on top.

Every import is read with `ast`, function-local ones included, so a lazy import cannot hide a loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"mbrl_sam", "agents", "envs", "benchmarks", "tests"}
OURS |= {"train", "evaluate", "measure", "report"}  # the scripts

# package -> the modules of ours it may import (a name allows itself and everything below it)
ALLOWED = {
    "envs": ("envs", "mbrl_sam.errors", "mbrl_sam.environment"),
    "mbrl_sam": ("mbrl_sam",),
    "agents": ("agents", "envs", "mbrl_sam"),
}


def imported_modules(path: Path, package: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file of `package`, relative resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    parts = [package.name, *path.relative_to(package).with_suffix("").parts]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # `from . import x` inside pkg/a/b.py is relative to pkg/a
                base = parts[: len(parts) - node.level]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from mbrl_sam import errors` names the module mbrl_sam.errors
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def violations(package: str, allowed: tuple[str, ...], root: Path = ROOT) -> list[str]:
    """`file:line imports module` for each import of ours that `package` may not make."""
    bad = []
    for path in sorted((root / package).rglob("*.py")):
        for line, module in imported_modules(path, root / package):
            if module.split(".")[0] not in OURS:
                continue
            if not any(module == a or module.startswith(a + ".") for a in allowed):
                bad.append(f"{path.relative_to(root)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_its_layer_allows(package: str) -> None:
    assert violations(package, ALLOWED[package]) == []


def test_the_check_sees_function_local_and_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "mbrl_sam" / "evaluation"
    pkg.mkdir(parents=True)
    (pkg / "late.py").write_text("def f():\n    from agents import make_agent\n")
    (pkg / "rel.py").write_text("from .. import errors\nfrom ..errors import ConfigError\n")
    (tmp_path / "envs").mkdir()
    envs_code = "import mbrl_sam.trainer\nfrom mbrl_sam import errors\n"
    (tmp_path / "envs" / "dmc.py").write_text(envs_code)
    assert violations("mbrl_sam", ALLOWED["mbrl_sam"], tmp_path) == [
        "mbrl_sam/evaluation/late.py:2 imports agents.make_agent"
    ]
    assert imported_modules(pkg / "rel.py", tmp_path / "mbrl_sam") == [
        (1, "mbrl_sam.errors"),
        (2, "mbrl_sam.errors.ConfigError"),
    ]
    bad_env = ["envs/dmc.py:1 imports mbrl_sam.trainer"]
    assert violations("envs", ALLOWED["envs"], tmp_path) == bad_env
