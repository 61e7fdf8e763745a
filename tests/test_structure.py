"""The package's structure, measured: imports point one way (no cycle), a network kind is a type (few
comparisons against the kind names), small modules and functions, one softmax."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "lstmgen"
KIND_NAMES = {"bi", "fwd", "jordan"}
MAX_KIND_COMPARISONS = 1  # (the issue allowed 8; one is left: the Jordan kind refusing "bi")
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 100


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = path.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _type_checking_only(node: ast.AST, parents: dict) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The lstmgen modules ``name`` imports (at any depth, but not under ``if TYPE_CHECKING:``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:  # from lstmgen.x import y: module lstmgen.x.y if there is one, else lstmgen.x
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in known else node.module)
    return {m for m in found if m in known and m != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        path.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycle_among_lstmgen_modules():
    mods = modules()
    graph = {name: imports(name, path, set(mods)) for name, path in mods.items()}
    assert sum(map(len, graph.values())) > 50  # (the graph was read)
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph))


def kind_comparisons(tree: ast.AST) -> list[int]:
    """Lines comparing with a network-kind name: ==, !=, in, not in (also against a literal tuple, list or
    set holding one) and match cases."""

    def names(node) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in KIND_NAMES
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            return any(names(e) for e in node.elts)
        return False

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(names(x) for x in (node.left, *node.comparators)):
            lines.append(node.lineno)
        elif isinstance(node, ast.MatchValue) and names(node.value):
            lines.append(node.lineno)
    return lines


def test_kind_comparisons_are_counted():
    tree = ast.parse('a == "bi"\nb in ("fwd", "x")\nc != 1\nmatch d:\n    case "jordan":\n        pass\n')
    assert kind_comparisons(tree) == [1, 2, 5]


def test_the_network_kind_is_a_type_not_a_flag():
    found = {f"{p.relative_to(PKG.parent)}:{n}" for p in modules().values()
             for n in kind_comparisons(ast.parse(p.read_text(encoding="utf-8")))}
    assert len(found) <= MAX_KIND_COMPARISONS, sorted(found)


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_and_functions_are_small(name):
    path = modules()[name]
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_MODULE_LINES
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long


def test_one_softmax():
    defs = [f"{p.name}:{node.name}" for p in modules().values() for node in ast.walk(ast.parse(p.read_text("utf-8")))
            if isinstance(node, ast.FunctionDef) and "softmax" in node.name and node.name != "softmax_xent_"]
    assert defs == ["losses.py:softmax"]
