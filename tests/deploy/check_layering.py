#!/usr/bin/env python3
"""The include graph reads top-down: no folder includes one above it.

Levels (a file may include its own folder and any folder of a lower level):
  0 common/       the shared vocabulary (within it: an acyclic graph of subfolders)
  1 library/      the model library and the compression policy
  2 ingest/, worker/, coordinator/   the three processes and dgcctl; none of
                  them includes another

Prints the graph (folder -> folders it includes, with counts) and every
violation with its file and line; exits 1 when there is one. tests/ may
include anything and is not checked.

Usage: check_layering.py [REPO_ROOT]
"""
import os
import re
import sys
from collections import defaultdict

LEVELS = {"common": 0, "library": 1, "ingest": 2, "worker": 2, "coordinator": 2}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
SUFFIXES = (".h", ".hpp", ".cc", ".cpp")


def folder_of(path):
    """'common/model/x.h' -> ('common', 'common/model'); 'library/x.h' -> ('library', 'library')."""
    parts = path.split("/")
    top = parts[0]
    sub = "/".join(parts[:2]) if top == "common" and len(parts) > 2 else top
    return top, sub


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    root = os.path.abspath(root)
    edges = defaultdict(lambda: defaultdict(int))
    sub_edges = defaultdict(set)
    violations = []
    files = 0
    for top in LEVELS:
        for dirpath, _, names in os.walk(os.path.join(root, top)):
            for name in sorted(names):
                if not name.endswith(SUFFIXES):
                    continue
                path = os.path.relpath(os.path.join(dirpath, name), root)
                files += 1
                src_top, src_sub = folder_of(path)
                with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
                    for lineno, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        inc = m.group(1)
                        dst_top, dst_sub = folder_of(inc)
                        if dst_top not in LEVELS:
                            continue  # generated headers (dgc.capnp.h), third-party paths
                        edges[src_top][dst_top] += 1
                        if src_top == "common" and dst_top == "common" and src_sub != dst_sub:
                            sub_edges[src_sub].add(dst_sub)
                        if dst_top != src_top and LEVELS[dst_top] >= LEVELS[src_top]:
                            violations.append(f"{path}:{lineno}: {src_top}/ (level {LEVELS[src_top]}) includes "
                                              f"{inc} ({dst_top}/, level {LEVELS[dst_top]})")

    print(f"include graph over {files} files (folder -> included folder: #includes)")
    for src in sorted(edges, key=lambda t: (LEVELS[t], t)):
        outs = ", ".join(f"{d} {n}" for d, n in sorted(edges[src].items(), key=lambda kv: (LEVELS[kv[0]], kv[0])))
        print(f"  {src}/ (level {LEVELS[src]}) -> {outs}")

    # Within common/: the subfolders must form an acyclic graph; print them in
    # an order where each includes only those before it.
    order, state = [], {}

    def visit(node, stack):
        if state.get(node) == "done":
            return
        if state.get(node) == "open":
            cycle = stack[stack.index(node):] + [node]
            violations.append("cycle among common/ subfolders: " + " -> ".join(cycle))
            return
        state[node] = "open"
        for nxt in sorted(sub_edges.get(node, ())):
            visit(nxt, stack + [node])
        state[node] = "done"
        order.append(node)

    for node in sorted(set(sub_edges) | {d for v in sub_edges.values() for d in v}):
        visit(node, [])
    print("common/ subfolders, lowest first: " + " < ".join(o.split("/", 1)[1] for o in order))

    if files == 0:
        print("no source files found under " + root, file=sys.stderr)
        return 1
    for v in violations:
        print("VIOLATION " + v)
    print(f"{len(violations)} violation(s)")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
