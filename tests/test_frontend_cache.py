"""The frontend tools' cache: a result is reused only for the sources it was made from, and lives outside the tree.

Real tools on a real tree: a copy of the sandbox's frontend template with its node_modules (hard links, as the
sandbox deploys it), and the template's own tsc and Vite. Speed is the benchmark's business (bench/run.py);
these tests prove the verdicts: reused when nothing changed, never when a source, a package or the cache
itself changed.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest
from test_hostile_side_effects import snapshot

from observe.frontend import CACHED_TREES, SETTLE_SECONDS, Frontend, Run, ToolCache, tree_key
from observe.profile import resolve
from sandbox.core import TEMPLATE_DIR, ensure_frontend_deps

TYPE_ERROR = '\nexport const orderCount: number = "forty-two";\n'


@pytest.fixture
def tree(tmp_path) -> Path:
    """The template with node_modules of its own (hard links: removing a package here leaves the template's),
    then left alone long enough for results to be stored."""
    ensure_frontend_deps()
    root = tmp_path / "frontend"
    shutil.copytree(TEMPLATE_DIR, root, ignore=shutil.ignore_patterns("node_modules", "dist"))
    # "/.": the contents, also when the template's node_modules is a link to another checkout's.
    subprocess.run(["cp", "-al", f"{TEMPLATE_DIR / 'node_modules'}/.", str(root / "node_modules")], check=True)
    time.sleep(SETTLE_SECONDS + 0.1)  # bounded: a tree changed a moment ago has its results run, never stored
    return root


def frontend(tree: Path, cache: Path) -> Frontend:
    """A fresh Frontend (a new run) of ``tree`` with its cache in ``cache``."""
    targets = tree.parent / "targets.toml"
    targets.write_text('[t]\nhost = "local"\n', encoding="utf-8")
    return Frontend(resolve(targets, "t", environ={}, overrides={"frontend_dir": str(tree)}), cache)


def results(tree: Path, cache: Path):
    """(tsc, build) of one run."""
    client = frontend(tree, cache)
    try:
        client.start("tsc", "build")
        return client.tsc(), client.build()
    finally:
        client.close()


def test_a_second_run_on_unchanged_sources_reuses_both_results_and_writes_nothing_into_the_tree(tree, tmp_path):
    cache = tmp_path / "cache"
    before = snapshot(tree)
    tsc, build = results(tree, cache)
    assert (tsc.returncode, build.returncode) == (0, 0), tsc.evidence() + build.evidence()
    assert tsc.reused is None and build.reused is None
    again_tsc, again_build = results(tree, cache)
    assert again_tsc.reused and again_build.reused
    assert (again_tsc.returncode, again_tsc.output) == (tsc.returncode, tsc.output)
    assert "reused: sources and tools unchanged" in again_tsc.evidence()
    assert snapshot(tree) == before, "a check wrote into the target's frontend tree"
    assert not list(tree.rglob("*.tsbuildinfo")) and list(cache.rglob("tsc.tsbuildinfo"))
    # The owner's only: tsc's messages quote the literals they reject.
    assert {stat.S_IMODE(folder.stat().st_mode) for folder in [cache, *cache.iterdir()]} == {0o700}


def test_a_type_error_added_after_a_passing_run_fails_the_next_one(tree, tmp_path):
    cache = tmp_path / "cache"
    assert results(tree, cache)[0].returncode == 0
    with open(tree / "src" / "main.ts", "a", encoding="utf-8") as handle:
        handle.write(TYPE_ERROR)
    tsc, _ = results(tree, cache)
    assert tsc.reused is None and tsc.returncode != 0 and "error TS2322" in tsc.output, tsc.evidence()


def test_a_same_size_edit_that_restores_the_old_mtime_still_changes_the_key(tree):
    main = tree / "src" / "main.ts"
    key = tree_key(tree).key
    st = main.stat()
    text = main.read_text(encoding="utf-8")
    main.write_text(text.replace("Fuel", "Fool"), encoding="utf-8")
    os.utime(main, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert main.stat().st_size == st.st_size and main.stat().st_mtime_ns == st.st_mtime_ns
    assert tree_key(tree).key not in (None, key)


def test_a_package_removed_from_node_modules_changes_the_key(tree):
    key = tree_key(tree).key
    shutil.rmtree(tree / "node_modules" / "vite")
    assert tree_key(tree).key not in (None, key)


def test_the_tools_own_caches_in_node_modules_do_not_change_the_key(tree):
    key = tree_key(tree).key
    (tree / "node_modules" / ".vite-temp").mkdir(exist_ok=True)
    (tree / "node_modules" / ".vite").mkdir(exist_ok=True)
    assert tree_key(tree).key == key


def test_a_link_to_a_directory_outside_the_tree_makes_it_uncacheable(tree, tmp_path):
    outside = tmp_path / "shared"
    outside.mkdir()
    (tree / "src" / "shared").symlink_to(outside)
    assert tree_key(tree).key is None


def test_a_tree_changed_a_moment_ago_has_its_results_run_but_not_stored(tree, tmp_path):
    cache = tmp_path / "cache"
    (tree / "src" / "main.ts").touch()
    assert not tree_key(tree).settled
    assert results(tree, cache)[0].reused is None
    assert results(tree, cache)[0].reused is None


def test_an_unreadable_cache_entry_is_a_miss(tree, tmp_path):
    cache = tmp_path / "cache"
    results(tree, cache)
    for entry in cache.rglob("*.json"):
        entry.write_text("{not json", encoding="utf-8")
    tsc, build = results(tree, cache)
    assert tsc.reused is None and build.reused is None
    assert (tsc.returncode, build.returncode) == (0, 0)


def test_a_damaged_build_info_file_falls_back_to_a_full_check(tree, tmp_path):
    cache = tmp_path / "cache"
    results(tree, cache)
    (info,) = cache.rglob("tsc.tsbuildinfo")
    # Valid JSON that tsc cannot use: it crashes on it (exit 1, no diagnostic) rather than ignoring it.
    info.write_text(json.dumps({"version": "5.9.3", "root": [1], "fileNames": ["a"]}), encoding="utf-8")
    for entry in cache.rglob("tsc.json"):
        entry.unlink()  # so that tsc runs
    with open(tree / "src" / "main.ts", "a", encoding="utf-8") as handle:
        handle.write(TYPE_ERROR)
    tsc, _ = results(tree, cache)
    assert tsc.returncode == 2 and "error TS2322" in tsc.output, tsc.evidence()
    assert json.loads(info.read_text(encoding="utf-8")).get("fileNames") != ["a"]


def test_a_program_reading_sources_outside_the_tree_is_never_reused(tree, tmp_path):
    cache = tmp_path / "cache"
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "units.ts").write_text("export const litres: number = 3.785;\n", encoding="utf-8")
    config = json.loads((tree / "tsconfig.json").read_text(encoding="utf-8"))
    config["include"] = ["src", "../shared"]  # a monorepo's shared code: the tree's key does not cover it
    (tree / "tsconfig.json").write_text(json.dumps(config), encoding="utf-8")
    time.sleep(SETTLE_SECONDS + 0.1)
    assert results(tree, cache)[0].returncode == 0
    tsc, build = results(tree, cache)
    assert tsc.reused is None and build.reused is None


def test_the_cache_keeps_the_trees_stored_last(tmp_path):
    for i in range(CACHED_TREES + 3):
        ToolCache(tmp_path / "cache", tmp_path / f"tree-{i}").store("build", "key", Run("npm run build", 0, "", 1.0))
        time.sleep(0.01)  # distinct mtimes
    kept = [ToolCache(tmp_path / "cache", tmp_path / f"tree-{i}").dir.exists() for i in range(CACHED_TREES + 3)]
    assert kept == [False] * 3 + [True] * CACHED_TREES
