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
# A path, unless a use-group follows it (those are read by `groups`); the
# possessive `++` keeps it from stopping early to dodge the lookahead.
PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)++)(?!::\{)")
GROUP_START = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{")
SKIPPED = re.compile(
    "|".join(
        [
            r"//[^\n]*",  # line comments
            r"/\*.*?\*/",  # block comments
            r'b?r(#*)".*?"\1',  # raw strings, closed by as many # as opened them
            r'b?"(?:\\.|[^"\\])*"',  # strings
            r"b?'(?:\\(?:u\{[0-9A-Fa-f]+\}|.)|[^'\\])'",  # char literals, not lifetimes
        ]
    ),
    re.S,
)


def strip(text):
    """Code without comments and literals, read left to right in one pass so
    that `//` inside a string is not taken for a comment (nor the reverse)."""
    return SKIPPED.sub(lambda m: '""' if m.group(0)[-1:] in "\"'" else " ", text)


def groups(code):
    """Each path a use-group names, `crate::a::{b, c::{d, self}}` giving
    a::b, a::c::d and a::c, with its root."""
    out = []
    for m in GROUP_START.finditer(code):
        prefix = m.group(2)[2:].split("::") if m.group(2) else []
        depth, i = 1, m.end()
        while i < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[i], 0)
            i += 1
        for parts in expand(code[m.end() : i - 1]):
            out.append((m.group(1), prefix + parts))
    return out


def expand(tree):
    """The paths of a use-tree's items (the text inside its braces)."""
    items, depth, start = [], 0, 0
    for i, c in enumerate(tree + ","):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == "," and depth == 0:
            items.append(tree[start:i].strip())
            start = i + 1
    paths = []
    for item in filter(None, items):
        item = item.split(" as ")[0].strip()
        if "{" in item:
            head, _, rest = item.partition("{")
            head = [p for p in head.rstrip(":").split("::") if p]
            paths += [head + sub for sub in expand(rest[: rest.rfind("}")])]
        else:
            paths.append([p for p in item.split("::") if p and p != "self" and p != "*"])
    return paths


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
        names += groups(code)
        for root, parts in names:
            if root == "crate":
                base = ()
            elif root == "super":
                base = module[:-1]
            else:
                base = module
            target = base
            # As deep as the path names files: `crate::a::b()` is a's
            # function `b` unless a/b.rs exists.
            for part in parts:
                if target + (part,) in files:
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
    known = {c.name for c in (ROOT / "crates").iterdir()}
    if wanted - known:
        print(f"no such crate: {', '.join(sorted(wanted - known))}; crates: {', '.join(sorted(known))}")
        return 2
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
