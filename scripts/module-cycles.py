#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Lists `use` cycles between the modules (files) of each crate.

Reads every crates/*/src/**/*.rs, resolves each path that starts with
`crate::`, `super::` or `self::` (in `use` lines and inline in code; comments
and strings are skipped) to the file of the module it names, and prints the
strongly connected groups of more than one file. Exit status 1 when there is
any, so CI or a person can run it:

    scripts/module-cycles.py            # every crate
    scripts/module-cycles.py vmatte-media
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
GROUP = re.compile(r"\b(crate|super|self)::\{([^}]*)\}")


def strip(text):
    """Code without comments and string literals."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return text


def module_of(src, path):
    """The module path of a file: lib.rs/main.rs -> [], a/mod.rs -> [a]."""
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def crate_graph(crate):
    src = crate / "src"
    files = {module_of(src, p): p for p in src.rglob("*.rs")}
    edges = {m: set() for m in files}
    for module, path in files.items():
        code = strip(path.read_text())
        names = [(m.group(1), m.group(2)[2:].split("::")) for m in PATH.finditer(code)]
        for m in GROUP.finditer(code):
            for item in m.group(2).split(","):
                item = item.strip().split(" as ")[0]
                if item:
                    names.append((m.group(1), item.split("::")))
        for root, parts in names:
            if root == "crate":
                base = ()
            elif root == "super":
                base = module[:-1]
            else:
                base = module
            target = base
            for part in parts:
                if base + tuple([part]) in files or target + (part,) in files:
                    target = target + (part,)
                else:
                    break
            # A file's own items, and its parent's declaration of it, are not edges.
            if target in files and target != module:
                edges[module].add(target)
    return files, edges


def cycles(edges):
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(group)

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


def main():
    wanted = set(sys.argv[1:])
    found = 0
    for crate in sorted((ROOT / "crates").iterdir()):
        if wanted and crate.name not in wanted:
            continue
        files, edges = crate_graph(crate)
        for group in cycles(edges):
            found += 1
            names = sorted(str(files[m].relative_to(ROOT)) for m in group)
            print(f"{crate.name}: cycle of {len(group)} files: " + ", ".join(names))
            for m in sorted(group):
                inside = sorted(str(files[t].relative_to(ROOT)) for t in edges[m] if t in group)
                print(f"    {files[m].relative_to(ROOT)} -> {', '.join(inside)}")
    if found == 0:
        print("no use cycles between modules")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
