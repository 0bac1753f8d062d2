"""The repository's three layers: graphtorch (the user's API) -> compiler -> runtime.

compiler/ and runtime/ sit at the repository root and install as graphtorch.compiler and
graphtorch.runtime (pyproject's package-dir). These tests hold the layout, the direction of
imports, and a wheel that works with no source tree on the path.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"graphtorch": "graphtorch", "graphtorch.compiler": "compiler", "graphtorch.runtime": "runtime"}
RANK = {"graphtorch": 0, "graphtorch.compiler": 1, "graphtorch.runtime": 2}


def modules() -> dict[str, Path]:
    """Every module of the three layers by its import name."""
    found = {}
    for package, folder in LAYERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            found[".".join([package] + [p for p in parts if p != "__init__"])] = path
    return found


def layer(module: str) -> str:
    return max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)


def imports(name: str, path: Path, known: dict) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for each import in a file; TYPE_CHECKING blocks are skipped."""
    tree, found = ast.parse(path.read_text()), []
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skip or not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
            base = ".".join(p for p in (base, node.module) if p)
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            targets = subs if len(subs) == len(node.names) else [base] + subs
        found += [(t, node.col_offset == 0) for t in targets if t in known and t != name]
    return found


def import_graph(module_level_only: bool) -> nx.DiGraph:
    known, g = modules(), nx.DiGraph()
    for name, path in known.items():
        g.add_node(name)
        g.add_edges_from((name, t) for t, top in imports(name, path, known) if top or not module_level_only)
    return g


def test_the_root_shows_the_three_layers_and_nothing_is_left_inside():
    for entry in ("graphtorch", "compiler", "runtime", "tests", "benchmarks", "pyproject.toml"):
        assert (ROOT / entry).exists(), entry
    assert not (ROOT / "graphtorch" / "compiler").exists() and not (ROOT / "graphtorch" / "runtime").exists()
    for folder in ("graphtorch", "compiler", "runtime"):
        assert (ROOT / "tests" / folder).is_dir(), f"tests/{folder} mirrors {folder}/"


def test_imports_point_one_way():
    upward = [(a, b) for a, b in import_graph(module_level_only=False).edges if RANK[layer(a)] > RANK[layer(b)]]
    assert not upward, f"imports against graphtorch -> compiler -> runtime: {upward}"


def test_module_level_imports_have_no_cycle():
    cycles = list(nx.simple_cycles(import_graph(module_level_only=True)))
    assert not cycles, cycles


def test_the_import_checker_sees_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """The two checks above can fail: a runtime module importing the compiler is both."""
    for folder in LAYERS.values():
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "compiler" / "ir.py").write_text("from ..runtime import jit\n")
    (tmp_path / "runtime" / "jit.py").write_text("from ..compiler import ir\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    g = import_graph(module_level_only=True)
    assert ("graphtorch.runtime.jit", "graphtorch.compiler.ir") in g.edges
    assert list(nx.simple_cycles(g))
    with pytest.raises(AssertionError, match="imports against"):
        test_imports_point_one_way()


def test_every_package_is_listed_for_the_wheel():
    """Every folder with modules is a package (an __init__.py) listed in pyproject.toml."""
    text = (ROOT / "pyproject.toml").read_text()
    packages = {name.rpartition(".")[0] if path.name != "__init__.py" else name for name, path in modules().items()}
    missing = [p for p in sorted(packages) if f'"{p}"' not in text]
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"
    for package in packages:
        folder = ROOT / LAYERS[layer(package)] / package[len(layer(package)) + 1:].replace(".", "/")
        assert (folder / "__init__.py").exists(), f"{folder} has modules but no __init__.py"


def test_a_built_wheel_works_without_the_source_tree(tmp_path):
    """Build a wheel from a copy of the sources, install it into a fresh venv and compile there."""
    src = tmp_path / "src"
    for entry in ("graphtorch", "compiler", "runtime", "pyproject.toml", "README.md"):
        copy = shutil.copytree if (ROOT / entry).is_dir() else shutil.copy
        copy(ROOT / entry, src / entry, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                           if (ROOT / entry).is_dir() else {}))
    run = lambda *cmd, **kw: subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300, **kw)
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
        str(src))
    wheel = next((tmp_path / "dist").glob("graphtorch-*.whl"))
    # numpy, networkx and llvmlite come from this interpreter's site-packages; graphtorch only from the wheel
    venv.create(tmp_path / "venv", system_site_packages=True, with_pip=False)
    python = tmp_path / "venv" / "bin" / "python"
    site = run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", site, str(wheel))
    shutil.rmtree(src)
    program = (
        "import sys, graphtorch as torch, graphtorch.compiler.llvm, graphtorch.runtime\n"
        "f = torch.compile(lambda x: (x * 2).relu().sum())\n"
        "x = torch.tensor([1.0, -2.0, 3.0])\n"
        "print([f(x).item() for _ in range(3)], torch.compiler.llvm.__name__)\n"
        # every graphtorch module loaded must come from the wheel, none from a tree another finder knows
        "for name, m in sorted(sys.modules.items()):\n"
        "    if name.split('.')[0] == 'graphtorch': print(name, getattr(m, '__file__', None) or list(m.__path__))\n")
    out = run(str(python), "-c", program, cwd=tmp_path).stdout.splitlines()
    assert out[0] == "[8.0, 8.0, 8.0] graphtorch.compiler.llvm", out
    loaded = dict(line.split(" ", 1) for line in out[1:])
    assert {"graphtorch.compiler.llvm", "graphtorch.runtime.jit", "graphtorch.ops.methods"} <= set(loaded)
    elsewhere = {name: where for name, where in loaded.items() if site not in where}
    assert not elsewhere, f"modules loaded from outside the installed wheel: {elsewhere}"
