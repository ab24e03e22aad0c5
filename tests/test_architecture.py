"""The layout holds: observation lives in ``observe/`` only, and no package's modules import each other in a cycle.

Read from the source (AST), so a new module is covered the day it is added.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("observe", "fixtures", "remediation", "health", "sandbox")
# What observing a target takes: opening its database, walking /proc, running its tools, talking to it.
OBSERVING_MODULES = {"sqlite3", "psutil", "subprocess", "socket", "requests", "urllib3", "fcntl"}
# remediation/ keeps what changes a target (actions/) apart from what reports on it; the two other exceptions
# observe nothing of the target: remediate.py runs the suite's own fix scripts and re-check in subprocesses, and
# notify/alerts.py locks its own state file (it posts to the alert receiver through observe.http's bounds).
MAY_OBSERVE = {
    "remediation/remediate.py": {"subprocess"},
    "remediation/notify/alerts.py": {"fcntl"},
}
# Reading the target's files from a check or a fix script instead of through observe/.
FILE_CALLS = {"open", "stat", "lstat", "iterdir", "scandir", "glob", "rglob", "is_dir", "is_file", "exists"}


def modules(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def imported(tree: ast.AST) -> set[str]:
    """Every module name an import statement anywhere in the tree names (lazy imports in functions too)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def calls(tree: ast.AST) -> set[str]:
    """Names of the functions and methods called in the tree."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            out.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return out


def parse(path: Path) -> ast.AST:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


@pytest.mark.parametrize("path", modules("remediation", "fixtures", "health"), ids=rel)
def test_only_observe_and_the_fix_actions_observe_the_target(path):
    name = rel(path)
    if name.startswith("remediation/actions/"):
        return  # the fix actions change the target; what they observe comes from observe/
    tree = parse(path)
    top = {module.split(".")[0] for module in imported(tree)}
    allowed = MAY_OBSERVE.get(name, set())
    assert not (top & OBSERVING_MODULES) - allowed, f"{name} observes the target itself: use observe/"
    literals = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert not any(text.startswith("/proc") for text in literals), f"{name} reads /proc: use observe.processes"


@pytest.mark.parametrize("path", modules("health", "remediation/scripts"), ids=rel)
def test_checks_and_fix_scripts_read_no_file_themselves(path):
    tree = parse(path)
    found = calls(tree) & FILE_CALLS
    assert not found, f"{rel(path)} calls {sorted(found)}: read the target through observe/"
    top = {module.split(".")[0] for module in imported(tree)}
    # pathlib builds the paths an action is given; reading them is what observe/ is for.
    assert not top & {"os", "shutil", "stat"}, f"{rel(path)} imports file modules: use observe/"


def test_no_project_modules_import_each_other_in_a_cycle():
    graph: dict[str, set[str]] = {}
    paths = {rel(p)[:-3].replace("/", ".").removesuffix(".__init__"): p for p in modules(*PACKAGES)}
    for module, path in paths.items():
        graph[module] = {name for name in imported(parse(path)) if name in paths and name != module}
    cycles = strongly_connected(graph)
    assert not cycles, f"import cycles: {cycles}"


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of two or more modules that reach each other through imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found
