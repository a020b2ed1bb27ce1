"""Which code of the agent's executable is resident (issue 14): maps the resident pages a memory run recorded
(`BENCH_MEMORY_TEXT=1 scripts/bench.sh memory`: each run's `binary_pages`) onto the binary's sections and
symbols, and sums them per crate (the first path segment of each demangled function name).

    python3 benches/text_residency.py BINARY MEMORY_JSON [STATE ...]

For each state: KiB resident per section (.text, .rodata, .eh_frame, ...), and over .text, KiB per crate:
the crate's code in the binary, its resident part, and the resident share. A page counts for a symbol by the
bytes of the symbol inside it (a page shared by two crates is split between them). Needs binutils (readelf,
nm) and symbols in the binary (not stripped)."""

import json
import re
import subprocess
import sys
from collections import defaultdict

PAGE = 4096


def sections(binary):
    """[(name, file offset, size, address)] of the allocated sections."""
    out = subprocess.run(["readelf", "-SW", binary], capture_output=True, text=True, check=True).stdout
    res = []
    for line in out.splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+\S+\s+(\S*)", line)
        if m and "A" in m.group(5) and m.group(1) != ".bss" and m.group(1) != ".tbss":
            res.append((m.group(1), int(m.group(3), 16), int(m.group(4), 16), int(m.group(2), 16)))
    return res


CRATE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def crate_of(name):
    """The crate a demangled Rust name belongs to: `<a::B as c::D>::f` -> a, `a::b::f` -> a; C symbols ->
    `[C] name`-less bucket `[other]`."""
    s = name.lstrip("<&*").replace("dyn ", "").replace("mut ", "").replace("const ", "")
    if s.startswith("impl "):
        s = s[5:]
    m = CRATE.match(s)
    if m and s[m.end():m.end() + 2] == "::":
        return m.group(0)
    return "[other]"


def text_symbols(binary):
    """[(address, size, crate)] of the functions, sorted by address."""
    out = subprocess.run(["nm", "-C", "--print-size", "--defined-only", binary], capture_output=True,
                         text=True, check=True).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[2] in "tTwW":
            size = int(parts[1], 16)
            if size:
                syms.append((int(parts[0], 16), size, crate_of(parts[3])))
    syms.sort()
    return syms


def analyse(binary, runs, states):
    secs = sections(binary)
    text = next(s for s in secs if s[0] == ".text")
    syms = text_symbols(binary)
    total = defaultdict(int)
    for addr, size, crate in syms:
        total[crate] += size
    for run in runs:
        if states and run["state"] not in states:
            continue
        pages = set()
        for a, b in run.get("binary_pages", []):
            pages.update(range(a, b + 1))
        by_sec = defaultdict(int)
        for pg in pages:
            lo, hi = pg * PAGE, (pg + 1) * PAGE
            hit = False
            for name, off, size, _ in secs:
                o = max(lo, off)
                e = min(hi, off + size)
                if e > o:
                    by_sec[name] += e - o
                    hit = True
            if not hit:
                by_sec["[padding]"] += PAGE
        # text: file offset -> address
        delta = text[3] - text[1]
        resident = defaultdict(int)
        for addr, size, crate in syms:
            off = addr - delta
            p0, p1 = off // PAGE, (off + size - 1) // PAGE
            for pg in range(p0, p1 + 1):
                if pg in pages:
                    o = max(off, pg * PAGE)
                    e = min(off + size, (pg + 1) * PAGE)
                    resident[crate] += e - o
        print(f"== {run['state']}: {len(pages) * 4} KiB of the binary resident")
        for name, b in sorted(by_sec.items(), key=lambda x: -x[1]):
            print(f"   {name:24} {b / 1024:8.0f} KiB")
        print(f"   .text by crate: {'crate':24} {'code KiB':>9} {'resident':>9} {'share':>6}")
        for crate, size in sorted(total.items(), key=lambda x: -x[1])[:40]:
            print(f"   {'':15} {crate:24} {size / 1024:9.0f} {resident[crate] / 1024:9.0f} "
                  f"{100 * resident[crate] / size:5.0f}%")


def main():
    binary, path, *states = sys.argv[1:]
    with open(path) as f:
        runs = json.load(f)["runs"]
    analyse(binary, runs, set(states))


if __name__ == "__main__":
    main()
