#!/usr/bin/env python3
"""Where a binary's bytes go: `nm -S --size-sort -C BINARY | python3 size-by-crate.py`.

Sums the code and data symbols (not .bss) by crate, the first path segment of the demangled
name (after a leading `<`, `&` or `*`; a name without one is C code or an impl on a slice or tuple), then
callmetrics' own symbols by module path (two segments deep). Legacy symbol mangling carries no
generic arguments, so a generic function counts in the crate that defines it (core, serde,
tokio...), wherever it was instantiated. See packaging/README.md, "The release profile".
"""
import collections
import re
import sys

by_crate = collections.Counter()
by_module = collections.Counter()
for line in sys.stdin:
    parts = line.rstrip("\n").split(" ", 3)
    if len(parts) < 4 or parts[2] in "bBuUvVwW":
        continue
    size, name = int(parts[1], 16), parts[3]
    bare = re.sub(r"^[<&*(\[]+|dyn |mut |const ", "", name).lstrip("<&*([")
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", bare)
    crate = m.group(1) if m else "(no crate path: C code, impls on slices and tuples)"
    by_crate[crate] += size
    if crate == "callmetrics":
        path = re.match(r"callmetrics((?:::[a-z_][a-z0-9_]*)*)", bare).group(1)
        by_module["::".join(path.split("::")[1:3]) or "(root)"] += size

print(f"{sum(by_crate.values()) / 1000:9.1f} KB named code and data")
print("--- by crate (KB)")
for crate, size in by_crate.most_common(40):
    print(f"{size / 1000:9.1f}  {crate}")
print("--- callmetrics by module (KB)")
for module, size in by_module.most_common():
    print(f"{size / 1000:9.1f}  {module}")
