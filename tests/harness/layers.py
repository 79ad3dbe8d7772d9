#!/usr/bin/env python3
"""The one-way rule of src/ (docs/architecture.md, "Folders and the one-way rule").

Every file but src/main.c lives in a layer folder, and each source file has
its header of the same name.  A file may include headers and call functions
of its own folder and of the folders below it, never of one above.  Checked
two ways:

  includes   every #include "..." in src/ and include/ (no build needed);
  calls      with --build DIR: which object defines each symbol another
             object uses (nm over the objects of libsluice.a), so a call
             through a hand-written prototype is caught too.

With --build it also finds the circles of files that call each other
(strongly connected components); a circle that spans folders fails, and
one larger than --max-circle files fails.  --report prints the numbers.
"""
import argparse
import json
import os
import re
import subprocess
import sys
from collections import defaultdict

# Bottom to top.  main.c sits above everything and is not checked.
LAYERS = ["base", "proto", "auth", "config", "limit", "net", "pool", "observe", "runtime",
          "admin"]
RANK = {name: i for i, name in enumerate(LAYERS)}
INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def folder_of(rel):
    """'src/pool/relay.c' or 'include/pool/relay.h' -> 'pool'; None for main.c."""
    parts = rel.split("/")
    if len(parts) == 3 and parts[0] in ("src", "include"):
        return parts[1]
    return None


def source_files(root):
    for top in ("src", "include"):
        for dirpath, _, names in os.walk(os.path.join(root, top)):
            for name in sorted(names):
                if name.endswith((".c", ".h")):
                    yield os.path.relpath(os.path.join(dirpath, name), root)


def check_layout(root, errors):
    for rel in source_files(root):
        parts = rel.split("/")
        if rel == "src/main.c":
            continue
        if len(parts) != 3:
            errors.append(f"{rel}: every file but src/main.c lives in a folder of one level")
        elif parts[1] not in RANK:
            errors.append(f"{rel}: folder '{parts[1]}' is not a layer ({', '.join(LAYERS)})")


def check_headers(root, errors):
    """One header per source file, named like it: src/F/x.c <-> include/F/x.h."""
    for rel in source_files(root):
        parts = rel.split("/")
        if parts[0] == "src" and len(parts) == 3 and rel.endswith(".c"):
            header = os.path.join("include", parts[1], parts[2][:-2] + ".h")
            if not os.path.exists(os.path.join(root, header)):
                errors.append(f"{rel}: no header {header} (one header per source file)")


def check_includes(root, errors):
    for rel in source_files(root):
        mine = folder_of(rel)
        if mine not in RANK:
            continue
        with open(os.path.join(root, rel), encoding="utf-8") as f:
            text = f.read()
        for inc in INCLUDE_RE.findall(text):
            theirs = inc.split("/")[0] if "/" in inc else None
            if theirs not in RANK:
                errors.append(f"{rel}: #include \"{inc}\" names no layer folder")
            elif RANK[theirs] > RANK[mine]:
                errors.append(f"{rel}: includes {inc}, a header of {theirs}/, above {mine}/")


def symbol_graph(build):
    """{source: set(source it calls)} from nm over sluice_lib's objects."""
    with open(os.path.join(build, "compile_commands.json"), encoding="utf-8") as f:
        commands = json.load(f)
    objects = {}
    for cmd in commands:
        out = cmd["output"]
        if "libsluice.a.p" not in out:
            continue
        src = os.path.relpath(os.path.join(cmd["directory"], cmd["file"]),
                              os.path.join(cmd["directory"], ".."))
        src = src[src.index("src/"):] if "src/" in src else src
        objects[src] = os.path.join(cmd["directory"], out)
    defined, used = {}, defaultdict(set)
    for src, obj in objects.items():
        out = subprocess.run(["nm", obj], check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            fields = line.split()
            if len(fields) == 2 and fields[0] == "U":
                used[src].add(fields[1])
            elif len(fields) == 3 and fields[1] in "TDBR":
                defined[fields[2]] = src
    graph = {src: set() for src in objects}
    for src, syms in used.items():
        for sym in syms:
            other = defined.get(sym)
            if other and other != src:
                graph[src].add(other)
    return graph


def circles(graph):
    """Strongly connected components with more than one file (Tarjan, iterative)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def check_calls(build, max_circle, errors, report):
    graph = symbol_graph(build)
    upward = []
    for src, callees in sorted(graph.items()):
        mine = folder_of(src)
        for other in sorted(callees):
            theirs = folder_of(other)
            if mine in RANK and theirs in RANK and RANK[theirs] > RANK[mine]:
                upward.append(f"{src} calls into {other}")
    errors.extend(f"{u}, a file of a higher folder" for u in upward)
    comps = circles(graph)
    for comp in comps:
        folders = sorted({folder_of(f) for f in comp})
        if len(folders) > 1:
            errors.append(f"call circle across folders {folders}: {' '.join(comp)}")
        if len(comp) > max_circle:
            errors.append(f"call circle of {len(comp)} files (at most {max_circle}): "
                          f"{' '.join(comp)}")
    if report:
        edges = sum(len(v) for v in graph.values())
        print(f"{len(graph)} files, {edges} file-to-file call edges, {len(upward)} upward")
        for comp in sorted(comps, key=len, reverse=True):
            print(f"circle of {len(comp)}: {' '.join(comp)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(__file__), "..", ".."))
    ap.add_argument("--build", help="build directory: also check calls between objects")
    ap.add_argument("--max-circle", type=int, default=8)
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    errors = []
    check_layout(args.root, errors)
    check_headers(args.root, errors)
    check_includes(args.root, errors)
    if args.build:
        check_calls(args.build, args.max_circle, errors, args.report)
    for e in errors:
        print(e)
    if not errors and args.report:
        print("layers: ok")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
