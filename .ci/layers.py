#!/usr/bin/env python3
"""Module dependency check: lists `crate::` / `super::` edges between modules (tests
excluded) and fails on

  * an import cycle between sibling modules, at every level of the module tree
    (top-level modules, and e.g. `delivery/smtp/open.rs` <-> `transaction.rs`);
  * a top-level module importing one that stands above it in LAYERS below
    (STYLE.md's order: shared types at the bottom, the stages, the wiring on top).

Usage: .ci/layers.py [--edges] [--warn-only]
  --edges      print every top-level edge with the file and line that makes it
  --warn-only  report, but exit 0 (used while a restructure is under way)
"""
import os
import re
import sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

# Top-level modules, lowest layer first. A module may import modules of its own layer
# only when no cycle results, and any module of a lower layer; never one above it.
# A module missing from the table is an error (new modules must take a place).
#
# Placed at the bottom as leaves (they import nothing of the crate): `providers`, because
# config checks `[warming.providers.NAME]` against its names and parses `domains`/`mx` into
# its `HostPattern` (bounce and warming both detect providers with it); `live`, the
# reloadable-value cell that server fills and the stages read. `http_client` (the client to
# the ERP, for deliveries and the events webhook) is shared infrastructure like dns and tls.
LAYERS = [
    ["reply", "envelope", "clock", "providers", "live", "message", "error_chain"],
    ["config", "metrics"],
    ["dns", "tls", "db", "http_client"],
    ["auth", "routing", "bounce"],
    ["queue"],
    ["report", "stats", "events", "suppression", "suspension"],
    ["delivery", "session", "intake"],
    ["admin", "server", "cli"],
]


def strip_code(text):
    """Source without comments, string literals and #[cfg(test)] items, lines kept."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == '"' or (c == "r" and re.match(r'r#*"', text[i:i + 10]) and not
                          (i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_"))):
            if c == "r":
                m = re.match(r'r(#*)"', text[i:])
                end = '"' + m.group(1)
                j = text.find(end, i + len(m.group(0)))
                j = n if j < 0 else j + len(end)
            else:
                j = i + 1
                while j < n and text[j] != '"':
                    j += 2 if text[j] == "\\" else 1
                j += 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 4]):
            m = re.match(r"'(\\.|[^\\'])'", text[i:i + 4])
            out.append("' '")
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    code = "".join(out)
    # Drop `#[cfg(test)] mod x { ... }` blocks (brace matched) and `#[cfg(test)] mod x;`.
    res = []
    pos = 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(#\[[^\]]*\]\s*)*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*", code):
        if m.start() < pos:
            continue
        res.append(code[pos:m.start()])
        j = m.end()
        if j < len(code) and code[j] == "{":
            depth = 0
            while j < len(code):
                if code[j] == "{":
                    depth += 1
                elif code[j] == "}":
                    depth -= 1
                    if depth == 0:
                        j += 1
                        break
                j += 1
        else:
            j = code.find(";", j) + 1
        res.append("\n" * code.count("\n", m.start(), j))
        pos = j
    res.append(code[pos:])
    return "".join(res)


def module_files():
    """{module path tuple: file}, skipping files that only tests include."""
    mods = {}
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
            if rel in (["lib"], ["main"]):
                continue
            if rel[-1] == "mod":
                rel = rel[:-1]
            mods[tuple(rel)] = path
    test_only = set()
    for mod, path in mods.items():
        text = open(path, encoding="utf-8").read()
        for m in re.finditer(r"#\[cfg\(test\)\]\s*(#\[path\s*=\s*\"([^\"]+)\"\]\s*)?"
                             r"(pub(\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text):
            if m.group(2):
                base = os.path.dirname(path)
                target = os.path.normpath(os.path.join(base, m.group(2)))
                for k, p in mods.items():
                    if os.path.normpath(p) == target:
                        test_only.add(k)
            else:
                test_only.add(mod + (m.group(5),))
    return {k: v for k, v in mods.items() if k not in test_only}


def expand_use(tree):
    """'a::{b, c::{d, e}}' -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = re.sub(r"\s+", "", tree)
    depth, parts, cur = 0, [], ""
    i = tree.find("{")
    if i < 0:
        return [tree]
    prefix, inner = tree[:i], tree[i + 1:tree.rfind("}")]
    for ch in inner:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        if p:
            out += [prefix + x for x in expand_use(p)]
    return out


def references(code):
    """(line, path segments) for every crate::/super:: path in code."""
    refs = []
    for m in re.finditer(r"\buse\s+((crate|super|self)::[^;]*);", code):
        line = code.count("\n", 0, m.start()) + 1
        for p in expand_use(m.group(1)):
            refs.append((line, p.split("::")))
    masked = re.sub(r"\buse\s+(crate|super|self)::[^;]*;", lambda m: "\n" * m.group(0).count("\n"), code)
    for m in re.finditer(r"\b((?:crate|super)(?:::(?:super|\w+))+)", masked):
        line = masked.count("\n", 0, m.start()) + 1
        refs.append((line, m.group(1).split("::")))
    return refs


def resolve(mod, segs, mods):
    """Module path a reference lands in (the longest known module prefix)."""
    base = list(mod)
    if segs[0] == "crate":
        base, segs = [], segs[1:]
    else:
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
    path = tuple(base)
    best = path
    for s in segs:
        path = path + (s.split(" as ")[0],)
        if path in mods:
            best = path
    return best


def main():
    show_edges = "--edges" in sys.argv
    warn_only = "--warn-only" in sys.argv
    mods = module_files()
    # edges[parent][(a, b)] = [(file, line), ...] between sibling children a -> b of parent
    edges = defaultdict(lambda: defaultdict(list))
    for mod, path in sorted(mods.items()):
        code = strip_code(open(path, encoding="utf-8").read())
        for line, segs in references(code):
            target = resolve(mod, segs, mods)
            k = 0
            while k < len(mod) and k < len(target) and mod[k] == target[k]:
                k += 1
            if k == len(mod) or k == len(target):
                continue  # an ancestor or a descendant: not an edge between siblings
            edges[mod[:k]][(mod[k], target[k])].append((os.path.relpath(path, ROOT + "/.."), line))

    failures = 0
    for parent in sorted(edges):
        graph = defaultdict(set)
        for a, b in edges[parent]:
            graph[a].add(b)
        for scc in sccs(graph):
            if len(scc) > 1:
                failures += 1
                where = "::".join(parent) or "crate"
                print(f"cycle in {where}: {' <-> '.join(sorted(scc))}")
                for a in sorted(scc):
                    for b in sorted(graph[a] & scc):
                        f, l = edges[parent][(a, b)][0]
                        print(f"    {a} -> {b}  ({f}:{l}, {len(edges[parent][(a, b)])} refs)")

    rank = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    top = edges[()]
    for name in sorted({m[0] for m in mods}):
        if name not in rank:
            failures += 1
            print(f"module {name} has no place in LAYERS (.ci/layers.py)")
    for (a, b), where in sorted(top.items()):
        if a in rank and b in rank and rank[b] > rank[a]:
            failures += 1
            f, l = where[0]
            print(f"upward: {a} (layer {rank[a]}) -> {b} (layer {rank[b]})  ({f}:{l}, {len(where)} refs)")
    if show_edges:
        for (a, b), where in sorted(top.items()):
            print(f"edge {a} -> {b}: " + ", ".join(f"{f}:{l}" for f, l in where[:3]))
    print(f"layers: {len(mods)} modules, {sum(len(e) for e in edges.values())} module edges, {failures} problems")
    return 0 if failures == 0 or warn_only else 1


def sccs(graph):
    """Tarjan's strongly connected components."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    nodes = set(graph) | {b for bs in graph.values() for b in bs}

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    sys.exit(main())
