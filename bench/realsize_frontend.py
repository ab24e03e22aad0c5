"""A real-size FossaWork frontend for the benchmark: ~1,000 TypeScript modules that import each other, a few
hundred type errors, and a Vite build of the whole graph.

The sandbox's own frontend is one file; ``tsc`` and ``vite build`` on it say nothing about a deployment's
frontend, where the type-check is most of a full run. The generated tree is a Vite + TypeScript project laid out
as the sandbox template is (its package.json, lock file, tsconfig.json and vite.config.ts), so the template's
node_modules serves it. Modules sit in layers: each imports three modules of the layer below (types, builders,
scorers), and ``src/main.ts`` imports the top layer and renders it, so the bundle reaches every layer.

Every module with ``ERROR_EVERY`` in its number carries one type error of one of three kinds (a string assigned
to a number, a string passed for a record, an object literal missing a property): errors tsc reports one each,
that esbuild strips with the types, so the Vite build still succeeds. That is also why the build script is
``vite build`` alone (the template's runs ``tsc --noEmit`` first): a project that ships with type errors builds
without the type-check, and with it the build would stop at tsc and never exercise Vite.

Deterministic: the same arguments give the same tree, byte for byte.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent / "sandbox" / "frontend_template"
LAYERS = 10
IMPORTS = 3  # modules of the layer below that each module imports
ERROR_EVERY = 3  # one module in three has a type error: 330 of 1,000 (the top layer's main.ts has none)
STATUSES = ("pending", "scheduled", "in_progress", "completed", "cancelled")


def name(layer: int, index: int) -> str:
    return f"m{layer:02d}{index:03d}"


def module(layer: int, index: int, per_layer: int, rng: random.Random) -> tuple[str, bool]:
    """The source of one module, and whether it carries a type error."""
    me = name(layer, index)
    deps = [name(layer - 1, i) for i in sorted(rng.sample(range(per_layer), IMPORTS))] if layer else []
    lines = [f'import {{ type Record_{d}, build_{d}, score_{d} }} from "../l{layer - 1:02d}/{d}";' for d in deps]
    parts = "".join(f"\n  parts_{d}: Record_{d}[];" for d in deps)
    built = "".join(
        f"\n    parts_{d}: depth > 0 ? [build_{d}(id * 3 + {k}, depth - 1)] : []," for k, d in enumerate(deps)
    )
    scored = "".join(f"\n  total += r.parts_{d}.reduce((sum, p) => sum + score_{d}(p), 0);" for d in deps)
    status = " | ".join(json.dumps(s) for s in STATUSES)
    lines += [
        "",
        f"export type Status_{me} = {status};",
        "",
        f"export interface Record_{me} {{",
        "  id: number;",
        "  label: string;",
        f"  status: Status_{me};",
        "  updated: Date;",
        f"  weight: number;{parts}",
        "}",
        "",
        f"export function label_{me}(id: number): string {{",
        f'  return `{me}-${{id.toString(16).padStart(4, "0")}}`;',
        "}",
        "",
        f"export function build_{me}(id: number, depth: number): Record_{me} {{",
        f"  const statuses: Status_{me}[] = [{', '.join(json.dumps(s) for s in STATUSES)}];",
        "  return {",
        "    id,",
        f"    label: label_{me}(id),",
        "    status: statuses[id % statuses.length],",
        "    updated: new Date(Date.UTC(2026, id % 12, (id % 28) + 1)),",
        f"    weight: (id * {index + 7} + depth) % 97,{built}",
        "  };",
        "}",
        "",
        f"export function score_{me}(r: Record_{me}): number {{",
        '  let total = r.weight + (r.status === "completed" ? 10 : 0);' + scored,
        "  return total;",
        "}",
        "",
        f"export class Store_{me} {{",
        f"  private readonly items = new Map<number, Record_{me}>();",
        "",
        f"  add(record: Record_{me}): this {{",
        "    this.items.set(record.id, record);",
        "    return this;",
        "  }",
        "",
        f"  where(test: (record: Record_{me}) => boolean): Record_{me}[] {{",
        "    return [...this.items.values()].filter(test);",
        "  }",
        "",
        f"  byStatus(): Partial<Record<Status_{me}, number>> {{",
        f"    const counts: Partial<Record<Status_{me}, number>> = {{}};",
        "    for (const record of this.items.values()) {",
        "      counts[record.status] = (counts[record.status] ?? 0) + 1;",
        "    }",
        "    return counts;",
        "  }",
        "",
        "  total(): number {",
        "    let sum = 0;",
        "    for (const record of this.items.values()) {",
        f"      sum += score_{me}(record);",
        "    }",
        "    return sum;",
        "  }",
        "}",
    ]
    broken = (layer * per_layer + index) % ERROR_EVERY == 1
    if broken:
        kind = (layer * per_layer + index) // ERROR_EVERY % 3
        if kind == 0:
            lines += ["", f"export const limit_{me}: number = label_{me}({index});"]
        elif kind == 1:
            lines += ["", f'export const bad_{me} = score_{me}("{me}");']
        else:
            lines += ["", f'export const draft_{me}: Record_{me} = {{ id: {index}, label: "draft" }};']
    return "\n".join(lines) + "\n", broken


def main_module(per_layer: int) -> str:
    top = [name(LAYERS - 1, i) for i in range(per_layer)]
    lines = [f'import {{ build_{m}, score_{m} }} from "./l{LAYERS - 1:02d}/{m}";' for m in top]
    lines += [
        "",
        'const app = document.querySelector<HTMLDivElement>("#app");',
        "",
        "const scores: [string, number][] = [",
        *(f'  ["{m}", score_{m}(build_{m}({i}, 2))],' for i, m in enumerate(top)),
        "];",
        "",
        "if (app) {",
        '  const rows = scores.map(([key, score]) => `<li>${key}: ${score}</li>`).join("");',
        "  app.innerHTML = `<h1>FossaWork V2</h1><p>Fuel dispenser work orders</p><ul>${rows}</ul>`;",
        "}",
    ]
    return "\n".join(lines) + "\n"


def generate(dest: Path, modules: int = 1000) -> dict:
    """Write the project into ``dest`` (created; must not exist): no node_modules (the sandbox links the
    template's). Returns what was written: modules, lines, bytes, type errors."""
    per_layer = modules // LAYERS
    rng = random.Random(16)  # the issue's number: the same tree on every run
    src = dest / "src"
    src.mkdir(parents=True)
    for item in ("tsconfig.json", "vite.config.ts", "index.html"):
        shutil.copy2(TEMPLATE / item, dest / item)
    package = json.loads((TEMPLATE / "package.json").read_text(encoding="utf-8"))
    package["name"] = "fossawork-v2-frontend-realsize"
    package["scripts"]["build"] = "vite build"  # see the module docstring
    (dest / "package.json").write_text(json.dumps(package, indent=2) + "\n", encoding="utf-8")
    lock = json.loads((TEMPLATE / "package-lock.json").read_text(encoding="utf-8"))
    lock["name"] = lock["packages"][""]["name"] = package["name"]
    (dest / "package-lock.json").write_text(json.dumps(lock, indent=2) + "\n", encoding="utf-8")
    errors = lines = size = 0
    for layer in range(LAYERS):
        folder = src / f"l{layer:02d}"
        folder.mkdir()
        for index in range(per_layer):
            text, broken = module(layer, index, per_layer, rng)
            (folder / f"{name(layer, index)}.ts").write_text(text, encoding="utf-8")
            errors += broken
            lines += text.count("\n")
            size += len(text)
    text = main_module(per_layer)
    (src / "main.ts").write_text(text, encoding="utf-8")
    return {
        "modules": per_layer * LAYERS + 1,
        "lines": lines + text.count("\n"),
        "bytes": size + len(text),
        "type_errors": errors,
    }
