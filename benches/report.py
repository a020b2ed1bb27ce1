#!/usr/bin/env python3
"""Regenerates docs/benchmarks.md and docs/bench/*.svg from target/bench/*.json (standard library only).

    python3 benches/report.py

Inputs (each optional; a missing one leaves its section saying how to produce it):
  target/bench/challenge.json, overhead.json, faults.json     (benches/run.py, via scripts/bench.sh)
  target/bench/codec.json, target/bench/codec_meta.json       (cargo bench -p mesh-dubbo --bench codec, via
                                                               scripts/bench.sh codec), target/criterion/*
  target/bench/routing.json, target/bench/routing_meta.json   (cargo bench -p mesh-balance --bench routing, via
                                                               scripts/bench.sh routing)
  target/bench/drift.json                                     (benches/drift.py, via scripts/bench.sh drift)
  target/bench/registry.json                                  (benches/registry.py, via scripts/bench.sh registry;
                                                               section written by benches/report_registry.py)
  target/bench/memory.json                                    (benches/memory.py, via scripts/bench.sh memory;
                                                               section written by benches/report_memory.py)
BENCH_OUT / BENCH_DOC move the inputs / the document (plots in bench/ next to it) elsewhere.
The "## Codec micro-benchmarks" section of the current docs/benchmarks.md is kept as it is, except that its
machine line, run paragraph and results table are rebuilt from codec.json when scripts/bench.sh re-ran the
codec bench (codec_meta.json newer than the document's run).
benches/analysis.md, if present, is included as it is after the overhead section: it is written by hand for
a given run and says so. benches/generic.md (issue 12's form / JSON / Dubbo-port costs), if present, follows it
as it is: benches/report_generic.py renders it from generic.json and generic_json.json for one run.
Targets are the issues' (4: challenge, overhead; 5: faults; 6: routing, balancer variants); they are listed
next to the measured values, never asserted.
"""

import html
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

from report_registry import registry_section
from drift import drift_section, plot_drift
from report_memory import memory_section, plot_memory

ROOT = Path(__file__).resolve().parent.parent
# BENCH_OUT / BENCH_DOC (optional): read the JSON from, and write the document (plots next to it, in bench/)
# to, other places than target/bench and docs/benchmarks.md, e.g. for smoke runs that must not touch the real ones.
BENCH = Path(os.environ.get("BENCH_OUT") or ROOT / "target" / "bench").resolve()
DOC = Path(os.environ.get("BENCH_DOC") or ROOT / "docs" / "benchmarks.md").resolve()
PLOTS = DOC.parent / "bench"

TARGET_RATIO = {128: 0.97, 256: 0.97, 512: 0.97, 1024: 0.95}
TARGET_ADDED_P99_US = 150
TARGET_CPU_RATIO = 1.0


def load(name):
    p = BENCH / name
    if not p.exists():
        return None
    return json.loads(p.read_text())


def fmt(x, nd=1, unit=""):
    if x is None:
        return "–"
    s = f"{int(round(x)):,}" if nd == 0 else f"{x:,.{nd}f}"
    return s + unit


def load_label(l, long=False):
    if l == "max":
        return "max rate (closed loop)" if long else "max rate"
    if l == "1conn":
        return "1 connection (closed loop)" if long else "1 connection"
    return f"{int(l):,} req/s (open loop)" if long else f"{int(l):,} rps"


def pct(x, nd=1):
    return "–" if x is None else f"{x * 100:.{nd}f}%"


def met(ok):
    return "**met**" if ok else "**not met**"


def table(header, rows, align=None):
    align = align or ["---"] + ["---:"] * (len(header) - 1)
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------------
# SVG (by hand)

COLORS = {"loadgen": "#1f77b4", "wrk": "#ff7f0e", "ceiling": "#555555", "direct": "#2ca02c", "mesh": "#1f77b4",
          "nginx": "#d62728", "consumer": "#1f77b4", "provider": "#9ecae1", "nginx_proxy": "#d62728"}


class Svg:
    def __init__(self, w, h):
        self.w, self.h = w, h
        self.parts = []

    def add(self, s):
        self.parts.append(s)

    def value_axis(self, L, R, T, B, ymax, Y, label):
        """A plot's frame: 6 grid lines labelled 0..ymax (positions from Y), the two axes, the vertical label."""
        for i in range(6):
            v = ymax * i / 5
            self.line(L, Y(v), self.w - R, Y(v), "#e5e5e5")
            self.text(L - 6, Y(v) + 4, f"{v:,.0f}", 10, "end")
        self.line(L, self.h - B, self.w - R, self.h - B, "#333")
        self.line(L, T, L, self.h - B, "#333")
        self.text(16, T + (self.h - T - B) / 2, label, 11, "middle", rotate=-90)

    def text(self, x, y, s, size=12, anchor="start", color="#222", weight="normal", rotate=None):
        tr = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate is not None else ""
        self.add(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{color}" '
                 f'font-weight="{weight}"{tr}>{html.escape(str(s))}</text>')

    def line(self, x1, y1, x2, y2, color="#ccc", width=1, dash=None):
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.add(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" '
                 f'stroke-width="{width}"{d}/>')

    def polyline(self, pts, color, width=2, dash=None):
        d = f' stroke-dasharray="{dash}"' if dash else ""
        p = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        self.add(f'<polyline points="{p}" fill="none" stroke="{color}" stroke-width="{width}"{d}/>')

    def rect(self, x, y, w, h, color, title=None):
        t = f"<title>{html.escape(title)}</title>" if title else ""
        self.add(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" '
                 f'fill="{color}">{t}</rect>')

    def marker(self, x, y, color, shape="circle", title=None):
        t = f"<title>{html.escape(title)}</title>" if title else ""
        if shape == "circle":
            self.add(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{color}">{t}</circle>')
        else:
            self.add(f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{color}">{t}</rect>')

    def save(self, path):
        body = "\n".join(self.parts)
        path.write_text(
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.w}" height="{self.h}" '
            f'viewBox="0 0 {self.w} {self.h}" font-family="DejaVu Sans, Arial, sans-serif">\n'
            f'<rect width="100%" height="100%" fill="white"/>\n{body}\n</svg>\n')


def nice_max(v):
    if v <= 0:
        return 1
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * e >= v:
            return m * e
    return 10 * e


def plot_challenge(ch, path):
    summ = ch["summary"]
    conns = sorted({s["connections"] for s in summ})
    if not conns:
        return False
    W, H = 900, 440
    L, R, T, B = 70, 290, 40, 60
    svg = Svg(W, H)
    cap = ch["params"]["capacity_qps"]
    ymax = nice_max(max([cap * 1.1] + [s["qps"] or 0 for s in summ]))
    lo, hi = math.log2(min(conns)) - 0.25, math.log2(max(conns)) + 0.25

    def X(c):
        return L + (math.log2(c) - lo) / (hi - lo) * (W - L - R)

    def Y(q):
        return H - B - q / ymax * (H - T - B)

    svg.text(W / 2 - 50, 22, "Challenge: QPS vs connections (2 cores, everything on one box)", 14, "middle",
             weight="bold")
    for i in range(6):
        q = ymax * i / 5
        svg.line(L, Y(q), W - R, Y(q), "#e5e5e5")
        svg.text(L - 8, Y(q) + 4, f"{q:,.0f}", 11, "end")
    for c in conns:
        svg.line(X(c), H - B, X(c), H - B + 5, "#333")
        svg.text(X(c), H - B + 20, c, 11, "middle")
    svg.line(L, H - B, W - R, H - B, "#333")
    svg.line(L, T, L, H - B, "#333")
    svg.text(L + (W - L - R) / 2, H - 15, "connections (log scale)", 12, "middle")
    svg.text(18, T + (H - T - B) / 2, "successful requests / s", 12, "middle", rotate=-90)
    # The ceiling min(c / 0.05 s, capacity) as a curve.
    pts = []
    steps = 80
    for k in range(steps + 1):
        c = 2 ** (lo + (hi - lo) * k / steps)
        pts.append((X(c), Y(min(c / 0.05, cap))))
    svg.polyline(pts, COLORS["ceiling"], 1.5, "6,4")
    legend = [("ceiling: min(c / 50 ms, 10,000)", COLORS["ceiling"], "dash", "6,4")]
    variants = [v for v in ("weights", "adaptive") if any(variant_of(s) == v for s in summ)]
    for variant in variants:
        for tool, shape in (("loadgen", "circle"), ("wrk", "square")):
            rows = sorted((s for s in summ if s["tool"] == tool and variant_of(s) == variant),
                          key=lambda s: s["connections"])
            if not rows:
                continue
            color, dash = LINE_STYLE[(tool, variant)]
            svg.polyline([(X(s["connections"]), Y(s["qps"])) for s in rows], color, 2, dash)
            for s in rows:
                svg.marker(X(s["connections"]), Y(s["qps"]), color, shape,
                           f'{tool}, {VARIANT_LABEL[variant]}, {s["connections"]}: {s["qps"]:,.0f} qps, '
                           f'{s["ratio"] * 100:.1f}% of ceiling')
                # Ratios: loadgen below right of the point, wrk above left (clear of the ceiling curve); the
                # second variant's a line further out.
                k = variants.index(variant)
                if tool == "loadgen":
                    svg.text(X(s["connections"]) + 6, Y(s["qps"]) + 16 + 12 * k, f'{s["ratio"] * 100:.1f}%', 10,
                             "start", color)
                else:
                    svg.text(X(s["connections"]) - 8, Y(s["qps"]) - 8 - 12 * k, f'{s["ratio"] * 100:.1f}%', 10,
                             "end", color)
            label = ("loadgen (checked)" if tool == "loadgen" else "wrk (not checked)")
            if len(variants) > 1 or variant != "weights":
                label += ", " + VARIANT_LABEL[variant]
            legend.append((label, color, shape, dash))
    refs = ch.get("reference") or []
    if refs:
        for r in refs:
            svg.marker(X(r["connections"]), Y(r["qps"]), COLORS["direct"], "square",
                       f'no agent {r["connections"]}: {r["qps"]:,.0f} qps, {r["ratio"] * 100:.1f}% of ceiling')
        legend.append(("no agent: loadgen → 50 ms sim", COLORS["direct"], "square", None))
    for i, (label, color, kind, dash) in enumerate(legend):
        y = T + 20 + i * 22
        x = W - R + 12
        if kind == "dash":
            svg.line(x, y - 4, x + 22, y - 4, color, 1.5, dash)
        else:
            svg.line(x, y - 4, x + 22, y - 4, color, 2, dash)
            svg.marker(x + 11, y - 4, color, kind)
        svg.text(x + 28, y, label, 9)
    svg.save(path)
    return True


def log_axis(svg, L, R, T, B, W, H, lo, hi, label):
    def Y(v):
        v = max(v, 10 ** lo)
        return H - B - (math.log10(v) - lo) / (hi - lo) * (H - T - B)

    for e in range(int(lo), int(hi) + 1):
        v = 10 ** e
        svg.line(L, Y(v), W - R, Y(v), "#e5e5e5")
        lab = f"{v:,.0f} µs" if v < 1000 else f"{v / 1000:,.0f} ms"
        svg.text(L - 6, Y(v) + 4, lab, 10, "end")
    svg.line(L, T, L, H - B, "#333")
    svg.line(L, H - B, W - R, H - B, "#333")
    svg.text(14, T + (H - T - B) / 2, label, 11, "middle", rotate=-90)
    return Y


def plot_overhead_latency(ov, path):
    paths = [p for p in ("direct", "mesh", "nginx") if p in ov["paths"]]
    loads = [l for l in ov["paths"].get("direct", {})]
    if not paths or not loads:
        return False
    pcts = [("p50_us", "p50"), ("p90_us", "p90"), ("p99_us", "p99"), ("p999_us", "p99.9")]
    pw, ph = 300, 360
    W, H = max(pw * len(loads) + 40, 820), ph + 80
    svg = Svg(W, H)
    svg.text(W / 2, 22, "Overhead: latency percentiles per path (medians over repetitions)", 14, "middle",
             weight="bold")
    allv = [ov["paths"][p][l][k] for p in paths for l in loads for k, _ in pcts
            if l in ov["paths"][p] and ov["paths"][p][l][k]]
    lo = math.floor(math.log10(max(1, min(allv))))
    hi = math.ceil(math.log10(max(allv)))
    for i, l in enumerate(loads):
        x0 = 20 + i * pw
        L, R, T, B = x0 + 55, W - (x0 + pw) + 5, 50, 70
        Y = log_axis(svg, L, R, T, B, W, H - 10, lo, hi, "latency (log)")
        title = load_label(l, True)
        svg.text((L + x0 + pw - 5) / 2, T - 10, title, 12, "middle", weight="bold")
        gw = (x0 + pw - 5 - L) / len(pcts)
        bw = gw * 0.8 / len(paths)
        for j, (k, name) in enumerate(pcts):
            gx = L + j * gw + gw * 0.1
            for m, p in enumerate(paths):
                v = ov["paths"][p].get(l, {}).get(k)
                if not v:
                    continue
                svg.rect(gx + m * bw, Y(v), bw - 1, (H - 10 - B) - Y(v), COLORS[p], f"{p} {name}: {v:,} µs")
            svg.text(gx + gw * 0.4, H - 10 - B + 14, name, 10, "middle")
    for m, p in enumerate(paths):
        x = 20 + m * 265
        svg.rect(x, H - 28, 12, 12, COLORS[p])
        svg.text(x + 18, H - 18, {"direct": "direct: loadgen → sim (Dubbo)",
                                  "mesh": "mesh: HTTP → 2 agents → sim",
                                  "nginx": "nginx: HTTP → nginx → responder"}[p], 11)
    svg.save(path)
    return True


def plot_overhead_cpu(ov, path):
    loads = [l for l in ov["paths"].get("mesh", {}) if l in ov["paths"].get("nginx", {})]
    if not loads:
        return False
    W, H = 640, 360
    L, R, T, B = 70, 190, 45, 50
    svg = Svg(W, H)
    svg.text(W / 2 - 40, 22, "Overhead: CPU per request of the hop (µs, medians)", 14, "middle", weight="bold")
    vals = []
    for l in loads:
        m = ov["paths"]["mesh"][l]
        vals.append(m["cpu_us_per_req"] or 0)
        vals.append(ov["paths"]["nginx"][l]["cpu_us_per_req"] or 0)
    ymax = nice_max(max(vals) * 1.1)

    def Y(v):
        return H - B - v / ymax * (H - T - B)

    svg.value_axis(L, R, T, B, ymax, Y, "CPU µs per request")
    gw = (W - L - R) / len(loads)
    bw = gw * 0.3
    for i, l in enumerate(loads):
        gx = L + i * gw + gw * 0.15
        m = ov["paths"]["mesh"][l]
        by = m.get("cpu_us_per_req_by_agent") or {}
        c, p = by.get("consumer") or 0, by.get("provider") or 0
        svg.rect(gx, Y(c), bw, H - B - Y(c), COLORS["consumer"], f"consumer agent: {c:.1f} µs")
        svg.rect(gx, Y(c + p), bw, Y(c) - Y(c + p), COLORS["provider"], f"provider agent: {p:.1f} µs")
        svg.text(gx + bw / 2, Y(c + p) - 4, f"{c + p:.0f}", 10, "middle")
        n = ov["paths"]["nginx"][l]["cpu_us_per_req"] or 0
        svg.rect(gx + bw + 4, Y(n), bw, H - B - Y(n), COLORS["nginx_proxy"], f"nginx proxy: {n:.1f} µs")
        svg.text(gx + bw * 1.5 + 4, Y(n) - 4, f"{n:.0f}", 10, "middle")
        r = ov.get("cpu_ratio_by_load", {}).get(l)
        title = load_label(l)
        svg.text(gx + bw + 2, H - B + 16, title, 11, "middle")
        if r:
            svg.text(gx + bw + 2, H - B + 30, f"ratio {r:.2f}", 10, "middle", "#444")
    for k, (label, color) in enumerate((("consumer agent", COLORS["consumer"]),
                                        ("provider agent", COLORS["provider"]),
                                        ("nginx proxy (all processes)", COLORS["nginx_proxy"]))):
        svg.rect(W - R + 12, T + 10 + k * 22, 12, 12, color)
        svg.text(W - R + 30, T + 20 + k * 22, label, 10)
    svg.save(path)
    return True


# ------------------------------------------------------------------------------------------------------
# balancer variants (issue 6 item 6), routing (issue 6), faults (issue 5)

VARIANT_LABEL = {"weights": "weights 1:2:3 + round robin", "adaptive": "adaptive, no weights"}
LINE_STYLE = {("loadgen", "weights"): ("#1f77b4", None), ("wrk", "weights"): ("#ff7f0e", None),
              ("loadgen", "adaptive"): ("#9467bd", "5,3"), ("wrk", "adaptive"): ("#8c564b", "5,3")}
TARGET_ROUTING_NS = 100
TARGET_ROUTING_FLAT = 1.5
TARGET_ROUTING_SPEEDUP = 50


def variant_of(x):
    return x.get("balancer") or "weights"


def balancer_comparison(ch):
    """Per connection count (loadgen, answers checked): adaptive without weights vs 1:2:3 weights."""
    out = []
    if not ch:
        return out
    summ = [s for s in ch["summary"] if s["tool"] == "loadgen"]
    for c in sorted({s["connections"] for s in summ}):
        w = next((s for s in summ if s["connections"] == c and variant_of(s) == "weights"), None)
        a = next((s for s in summ if s["connections"] == c and variant_of(s) == "adaptive"), None)
        if w and a and w["qps"] and a["qps"] is not None:
            out.append({"connections": c, "weights_qps": w["qps"], "adaptive_qps": a["qps"],
                        "ratio": a["qps"] / w["qps"], "met": a["qps"] >= w["qps"],
                        "errors": (w["errors"] or 0, a["errors"] or 0)})
    return out


def routing_targets(rt):
    runs = sorted(rt.get("runs") or [], key=lambda r: r["providers"])
    if not runs:
        return None
    at = {r["providers"]: r for r in runs}
    big = at.get(5000) or runs[-1]
    span = [r["ours_ns"] for r in runs if 100 <= r["providers"] <= 5000]
    flat = max(span) / min(span) if span and min(span) > 0 else None
    speedup = big["naive_ns"] / big["ours_ns"] if big["ours_ns"] else None
    return {"n": big["providers"], "ours": big["ours_ns"], "flat": flat, "speedup": speedup,
            "lo": min(r["providers"] for r in runs), "hi": max(r["providers"] for r in runs)}


def plot_routing(rt, path):
    runs = sorted(rt.get("runs") or [], key=lambda r: r["providers"])
    if not runs:
        return False
    W, H = 820, 400
    L, R, T, B = 80, 250, 40, 55
    svg = Svg(W, H)
    svg.text(W / 2 - 60, 22, "Routing: ns per route + pick vs providers (log-log)", 14, "middle", weight="bold")
    vals = [r[k] for r in runs for k in ("ours_ns", "naive_ns") if r.get(k)]
    lo, hi = math.floor(math.log10(min(vals))), math.ceil(math.log10(max(vals)))
    if hi == lo:
        hi += 1
    ns = [r["providers"] for r in runs]
    xlo, xhi = math.log10(min(ns)) - 0.1, math.log10(max(ns)) + 0.1

    def X(n):
        return L + (math.log10(n) - xlo) / (xhi - xlo) * (W - L - R)

    def Y(v):
        return H - B - (math.log10(max(v, 10 ** lo)) - lo) / (hi - lo) * (H - T - B)

    for e in range(lo, hi + 1):
        v = 10 ** e
        svg.line(L, Y(v), W - R, Y(v), "#e5e5e5")
        lab = f"{v:,.0f} ns" if v < 1000 else (f"{v / 1000:,.0f} µs" if v < 1e6 else f"{v / 1e6:,.0f} ms")
        svg.text(L - 6, Y(v) + 4, lab, 10, "end")
    for n in ns:
        svg.line(X(n), H - B, X(n), H - B + 5, "#333")
        svg.text(X(n), H - B + 20, f"{n:,}", 11, "middle")
    svg.line(L, H - B, W - R, H - B, "#333")
    svg.line(L, T, L, H - B, "#333")
    svg.text(L + (W - L - R) / 2, H - 12, "providers (log scale)", 12, "middle")
    svg.text(16, T + (H - T - B) / 2, "ns per route + pick (log)", 11, "middle", rotate=-90)
    svg.line(L, Y(TARGET_ROUTING_NS), W - R, Y(TARGET_ROUTING_NS), "#2ca02c", 1, "4,3")
    series = [("ours_ns", "ours (cached bitsets + adaptive P2C)", "#1f77b4", "circle"),
              ("naive_ns", "naive per-call O(n) chain", "#d62728", "square")]
    for k, label, color, shape in series:
        pts = [(X(r["providers"]), Y(r[k])) for r in runs if r.get(k)]
        svg.polyline(pts, color, 2)
        for r in runs:
            if r.get(k):
                svg.marker(X(r["providers"]), Y(r[k]), color, shape, f"{label}, {r['providers']:,}: {r[k]:,.1f} ns")
    for i, (label, color, kind) in enumerate([(l, c, s) for _, l, c, s in series]
                                             + [(f"target: {TARGET_ROUTING_NS} ns", "#2ca02c", "dash")]):
        y, x = T + 20 + i * 22, W - R + 12
        if kind == "dash":
            svg.line(x, y - 4, x + 22, y - 4, color, 1, "4,3")
        else:
            svg.line(x, y - 4, x + 22, y - 4, color, 2)
            svg.marker(x + 11, y - 4, color, kind)
        svg.text(x + 28, y, label, 10)
    svg.save(path)
    return True


def routing_section(rt, meta):
    out = ["## Routing and balancing (issue 6)", ""]
    if not rt:
        out.append("Not run yet: `bash scripts/bench.sh routing` (`cargo bench -p mesh-balance --bench routing`).")
        return "\n".join(out) + "\n"
    st = rt.get("setup") or {}
    out.append(
        "`crates/mesh-balance/benches/routing.rs`: one service with 100 to 5,000 providers, a tag router "
        f"({', '.join(st.get('tags') or [])}) and {len(st.get('rules') or [])} condition rules on "
        f"({'; '.join('`' + r + '`' for r in st.get('rules') or [])}); request mix: {st.get('request_mix', '–')}. "
        f"**ours**: {st.get('ours', 'route_and_pick')}. **naive**: a per-call O(n) chain written in the bench "
        "(scan every provider, tag router, each condition rule by string matching, weighted random over the "
        f"survivors: what Dubbo's RouterChain + LoadBalance do per call). Statistic: {st.get('stat', '–')}."
    )
    out.append("")
    if meta:
        g = meta.get("load") or {}
        out.append(f"Run {meta['machine']['date_utc']} (`{meta['command']}` from `scripts/bench.sh routing`), commit "
                   f"`{meta['machine'].get('commit')}`" + (" plus uncommitted changes" if meta["machine"].get(
                       "uncommitted_changes") else "")
                   + f"; 1-minute load average {g.get('loadavg_1m', 0):.2f} at the start (after waiting "
                   f"{g.get('waited_s', 0):.0f} s), {g.get('loadavg_1m_after', 0):.2f} at the end.")
    else:
        out.append("(routing.json was not produced by `scripts/bench.sh routing`: no load-gate record.)")
    out.append("")
    runs = sorted(rt.get("runs") or [], key=lambda r: r["providers"])
    rows = [(f'{r["providers"]:,}', fmt(r["ours_ns"], 1), fmt(r.get("ours_min_ns"), 1), fmt(r.get("route_only_ns"), 1),
             fmt(r["naive_ns"], 0), f'{r["naive_ns"] / r["ours_ns"]:,.0f}×' if r["ours_ns"] else "–",
             fmt(r.get("weighted_random_ns"), 1), fmt(r.get("least_active_ns"), 1), fmt(r.get("build_us"), 0),
             r.get("cached_sets", "–")) for r in runs]
    out.append(table(["providers", "ours ns", "ours fastest batch ns", "route only ns", "naive ns", "speedup",
                      "ours, weighted random ns", "ours, least active ns", "table build µs", "cached sets"], rows))
    out.append("")
    out.append("![routing ns vs providers](bench/routing.svg)")
    out.append("")
    bal = rt.get("balancers") or {}
    if bal:
        sizes = sorted(bal, key=int)
        names = []
        for n in sizes:
            for k in bal[n]:
                if k not in names:
                    names.append(k)
        out.append("### Balancer micro-benchmark")
        out.append("")
        out.append("ns per pick of each balancer over one route with no routers (weights 100/200/300 in turn, live "
                   "state preloaded); `_flat` = the same balancer with grouped picks turned off (a scan of every "
                   "candidate), for comparison. Same run as the table above.")
        out.append("")
        out.append(table(["balancer", *[f"{int(n):,} candidates ns" for n in sizes]],
                         [(k, *[fmt(bal[n].get(k), 1) for n in sizes]) for k in names]))
        out.append("")
    return "\n".join(out) + "\n"


PHASE_LABEL = {"steady": "steady", "kill": "kill -9 provider agent medium", "etcd_down": "etcd stopped",
               "etcd_back": "etcd started again", "restart": "planned restart of provider agent large"}
PHASE_COLOR = {"steady": "#f7f7f7", "kill": "#fde0dd", "etcd_down": "#deebf7", "etcd_back": "#eff3ff",
               "restart": "#e5f5e0"}


def plot_faults(fa, path):
    tl = fa.get("timeline") or {}
    ok, failed = tl.get("ok") or [], tl.get("failed") or []
    if not ok:
        return False
    w = tl["window_ms"] / 1000.0
    n = len(ok)
    W, H = 980, 420
    L, R, T, B = 70, 30, 60, 60
    svg = Svg(W, H)
    svg.text(W / 2, 20, f"Faults: successes and failures per {tl['window_ms']} ms window "
                        f"({fa['params']['connections']} connections)", 14, "middle", weight="bold")
    ymax = nice_max(max(max(ok), max(failed) if failed else 0, 1) * 1.1)
    tmax = n * w

    def X(t):
        return L + t / tmax * (W - L - R)

    def Y(v):
        return H - B - v / ymax * (H - T - B)

    for p in fa["phases"]:
        a, b = p["start_s"], min(p["end_s"], tmax)
        svg.rect(X(a), T, X(b) - X(a), H - T - B, PHASE_COLOR.get(p["phase"], "#fafafa"))
        svg.line(X(a), T - 4, X(a), H - B, "#555", 1, "3,3")
        svg.text(X(a) + 3, T - 8, PHASE_LABEL.get(p["phase"], p["phase"]).replace("provider agent ", ""), 9)
    for i in range(6):
        v = ymax * i / 5
        svg.line(L, Y(v), W - R, Y(v), "#e5e5e5")
        svg.text(L - 6, Y(v) + 4, f"{v:,.0f}", 10, "end")
    step = 10 if tmax > 60 else 5 if tmax > 20 else 1
    t = 0
    while t <= tmax:
        svg.line(X(t), H - B, X(t), H - B + 4, "#333")
        svg.text(X(t), H - B + 16, f"{t:g}", 10, "middle")
        t += step
    svg.line(L, H - B, W - R, H - B, "#333")
    svg.line(L, T, L, H - B, "#333")
    svg.text(L + (W - L - R) / 2, H - 25, "seconds since the measured start", 11, "middle")
    svg.text(16, T + (H - T - B) / 2, f"calls completed per {tl['window_ms']} ms", 11, "middle", rotate=-90)
    svg.polyline([(X((i + 0.5) * w), Y(v)) for i, v in enumerate(ok)], "#1f77b4", 1.2)
    for i, v in enumerate(failed):
        if v:
            x = X(i * w)
            svg.rect(x, Y(v), max(X((i + 1) * w) - x, 2), H - B - Y(v), "#d62728",
                     f"{i * w:.1f} s: {v} failed ({', '.join(f'{k} {c}' for k, c in tl['failed_kinds'][i].items())})")
    for e in fa.get("events") or []:
        if e["event"].startswith("phase "):
            continue
        svg.marker(X(e["at_s"]), T + 6, "#333", "square", f'{e["at_s"]:.2f} s: {e["event"]}')
    svg.rect(L, H - 14, 12, 10, "#1f77b4")
    svg.text(L + 16, H - 5, "successes", 10)
    svg.rect(L + 100, H - 14, 12, 10, "#d62728")
    svg.text(L + 116, H - 5, "failures", 10)
    svg.text(L + 190, H - 5, "■ events (hover for details); background: phases", 10)
    svg.save(path)
    return True


def faults_section(fa):
    out = ["## Faults under load (issue 5)", ""]
    if not fa:
        out.append("Not run yet: `bash scripts/bench.sh faults`.")
        return "\n".join(out) + "\n"
    p = fa["params"]
    ph = p["phases_s"]
    out.append(
        f"The challenge topology (etcd; simulators small/medium/large, 50 ms, thread cap 200, knees 100/200/300; a "
        f"provider agent in front of each, registered with its weight and `--max-concurrency 200`, etcd lease TTL "
        f"{p['lease_ttl_s']} s; one consumer agent, {p['consumer_balancer']} balancer, discovering through etcd) under "
        f"loadgen at {p['connections']} connections for the whole scenario ({p['loadgen']}; `--timeline-ms "
        f"{p['timeline_ms']}`), after {p['warmup_s']:g} s of warm-up. Phases: steady {ph['steady']:g} s; "
        f"**kill**: `kill -9` of the medium provider agent (no deregistration: its key stays until the lease "
        f"expires), {ph['kill']:g} s; **etcd down**: etcd stopped (SIGTERM) for {ph['etcd_down']:g} s, then "
        f"**etcd back** on the same ports and data directory, {ph['etcd_back']:g} s; **restart**: SIGTERM to the "
        f"large provider agent (it deregisters, drains, exits), started again with the same flags at once, then "
        f"{ph['restart']:g} s. Each {p['timeline_ms']} ms window of loadgen's timeline is counted in "
        f"{p['phase_of_a_window']}."
    )
    out.append("")
    if fa.get("machine"):
        m = fa["machine"]
        out.append(f"Run {m['date_utc']} (binaries and commit: see Machine and versions)"
                   + f"; load average {fa['load_gate']['loadavg_1m']:.2f} at the start; other processes used "
                   f"{fa.get('other_cpu_s', 0):.1f} CPU s during the scenario.")
        out.append("")
    rows = []
    for t in fa["targets"]:
        rows.append((t["target"], t["measured"], met(t["met"])))
    out.append(table(["target", "measured", ""], rows, ["---", "---", "---"]))
    out.append("")
    rows = []
    for q in fa["phases"]:
        kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(q["failed_by_kind"].items())) or "–"
        gap = (fmt(q["longest_gap_ms"], 1) if q["longest_gap_ms"] is not None
               else f"< {fmt(q.get('gap_min_ms'), 0)}")
        cpu = fa.get("cpu_s_by_phase", {}).get(q["phase"], {})
        agents = sum(v for k, v in cpu.items() if k != "etcd")
        rows.append((PHASE_LABEL.get(q["phase"], q["phase"]), f'{q["start_s"]:.1f}–{q["end_s"]:.1f}',
                     f'{q["completed"]:,}', f'{q["succeeded"]:,}', f'{q["failed"]:,}',
                     "–" if q["failed_pct"] is None else f'{q["failed_pct"]:.3f}%', kinds, gap,
                     fmt(agents / (q["end_s"] - q["start_s"]) * 100, 0) + "%" if q["end_s"] > q["start_s"] else "–"))
    out.append(table(["phase", "s", "completed", "succeeded", "failed", "failed %", "failures by kind",
                      "longest gap without a success, ms", "agents' CPU (% of one core)"], rows))
    out.append("")
    fk = ", ".join(f"{k} {v:,}" for k, v in sorted(fa["failed_by_kind"].items())) or "none"
    out.append(
        f"Whole scenario: {fa['sent']:,} calls sent, {fa['succeeded']:,} succeeded, {fa['failed']:,} failed ({fk}); "
        f"{fmt(fa['qps'], 0)} QPS; longest interval without any success {fmt(fa['longest_gap_ms'], 1)} ms"
        + (f"; failures between {fa['first_failure_ms'] / 1000:.2f} s and {fa['last_failure_ms'] / 1000:.2f} s"
           if fa.get("first_failure_ms") is not None else "")
        + (f". The killed agent's key left etcd {fa['kill_key_gone_s']:.1f} s after the kill"
           if fa.get("kill_key_gone_s") is not None else ". The killed agent's key did not leave etcd within the kill phase")
        + f"; the restarted agent was observed for {fa['restart_observed_s']:.1f} s. Agents' CPU over the measured "
        "scenario (s): " + ", ".join(f"{k} {v:.1f}" for k, v in fa.get("cpu_s", {}).items())
        + (f" ({fmt(fa.get('agents_cpu_us_per_req'), 0)} µs per call for the agents)." if fa.get(
            "agents_cpu_us_per_req") else "."))
    out.append("")
    out.append("Events (s since the measured start): " + "; ".join(
        f'{e["at_s"]:.2f} {e["event"]}' for e in fa.get("events") or [] if not e["event"].startswith("phase ")) + ".")
    out.append("")
    out.append("![faults timeline](bench/faults_timeline.svg)")
    out.append("")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------------------
# sections


def machine_section(ch, ov, meta, fa=None, rt_meta=None):
    m = (ch or ov or fa or {}).get("machine") or (meta or rt_meta or {}).get("machine")
    if not m:
        return "## Machine\n\nNo results yet: run `bash scripts/bench.sh all`.\n"
    rows = [
        ("CPUs", f'{m["nproc"]} (`nproc`), {m.get("cpu_model")}' + (f', {float(m["cpu_mhz"]):.0f} MHz' if m.get("cpu_mhz") else "")),
        ("kernel", m["kernel"]),
        ("rustc", m.get("rustc")),
        ("etcd", m.get("etcd")),
        ("nginx", m.get("nginx")),
        ("wrk", m.get("wrk")),
        ("python", m.get("python")),
    ]
    out = ["## Machine and versions", "", table(["", ""], rows, ["---", "---"]), ""]
    for name, d in (("challenge", ch), ("overhead", ov), ("faults", fa)):
        if not d:
            continue
        mm = d["machine"]
        b = mm.get("build")
        if b:
            dirty = b.get("uncommitted_changes") or []
            state = (f"HEAD `{b['commit']}` when `cargo build` checked the binaries ({b['date_utc']}"
                     + (f"; binaries dated {b['binaries_utc']}" if b.get("binaries_utc") else "") + ")")
        else:
            dirty = mm.get("uncommitted_changes") or []
            state = f"HEAD at the start `{mm.get('commit')}`"
        if dirty:
            state += (f" plus uncommitted changes in {', '.join('`' + f + '`' for f in dirty)}"
                      + (f" (diff sha256 `{mm['uncommitted_diff_sha256']}`)" if mm.get("uncommitted_diff_sha256") else ""))
        out.append(f"- `{name}`: run {mm['date_utc']}, {state}; binaries (sha256 prefix) "
                   + ", ".join(f"{k} `{v}`" for k, v in (mm.get("binaries_sha256") or {}).items()) + ".")
    for name, md in (("codec", meta), ("routing", rt_meta)):
        if not md:
            continue
        mm = md["machine"]
        dirty = mm.get("uncommitted_changes") or []
        out.append(f"- `{name}`: run {mm['date_utc']}, commit `{mm.get('commit')}`"
                   + (" plus uncommitted changes" if dirty else "") + ".")
    out.append("")
    out.append("Everything (load generators, simulators, agents, etcd, nginx) runs on the same "
               f'{m["nproc"]} cores, so absolute numbers are those of a crowded box; the comparisons that matter '
               "are made within one run (ratios, CPU per request, added latency).")
    return "\n".join(out) + "\n"


def targets_section(ch, ov, rt, fa):
    rows = []
    if ch:
        variants = [v for v in ("weights", "adaptive") if any(variant_of(s) == v for s in ch["summary"])]
        for s in sorted(ch["summary"], key=lambda s: (s["connections"], variants.index(variant_of(s)))):
            if s["tool"] != "loadgen":
                continue
            t = TARGET_RATIO.get(s["connections"])
            if t is None:
                continue
            ok = s["ratio"] >= t and (s["errors"] or 0) == 0
            ref = next((r for r in ch.get("reference") or [] if r["connections"] == s["connections"]), None)
            note = (f"; with no agent at all (loadgen straight to a 50 ms simulator) {pct(ref['ratio'])}"
                    if ref else "")
            var = f" ({VARIANT_LABEL[variant_of(s)]})" if len(variants) > 1 or variant_of(s) != "weights" else ""
            rows.append((f"challenge, {s['connections']} connections{var}: ≥ {t * 100:.0f}% of the ceiling, 0 errors",
                         f"{pct(s['ratio'])} of {s['ceiling']:,.0f}, {fmt(s['errors'], 0)} errors (loadgen){note}",
                         met(ok)))
        for c in balancer_comparison(ch):
            rows.append((f"issue 6: adaptive balancer without weights ≥ QPS with 1:2:3 weights, {c['connections']} "
                         "connections",
                         f"{fmt(c['adaptive_qps'], 0)} vs {fmt(c['weights_qps'], 0)} QPS ({c['ratio'] * 100:.1f}%; "
                         f"errors {c['errors'][1]:,} vs {c['errors'][0]:,})", met(c["met"])))
    else:
        rows.append(("challenge", "not run (`bash scripts/bench.sh challenge`)", "–"))
    if ov and ov.get("cpu_ratio") is not None:
        by = ov["cpu_ratio_by_load"]
        detail = ", ".join(f"{load_label(l)}: {r:.2f}" for l, r in by.items())
        rows.append(("overhead: the two agents' CPU per request ≤ nginx's for one HTTP hop (ratio ≤ 1 at every load)",
                     f"worst ratio {ov['cpu_ratio']:.2f} ({detail})", met(ov["cpu_ratio"] <= TARGET_CPU_RATIO)))
    if ov and ov.get("added_p99_us") is not None:
        at = ov.get("added_p99_us_at", "1000")
        rows.append((f"overhead: the mesh adds ≤ {TARGET_ADDED_P99_US} µs p99 over the direct path at {int(at):,} rps "
                     "(latency from the intended send time)",
                     f"+{fmt(ov['added_p99_us'], 0)} µs (median of {len(ov['added_p99_us_reps'])} repetitions: "
                     + ", ".join(f"{x:+,}" for x in ov["added_p99_us_reps"]) + " µs); one nginx hop: "
                     f"+{fmt(ov.get('nginx_added_p99_us'), 0)} µs",
                     met(ov["added_p99_us"] <= TARGET_ADDED_P99_US)))
    if ov and ov.get("added_p99_us_sent") is not None:
        at = ov.get("added_p99_us_at", "1000")
        reps = ov.get("added_p99_us_sent_reps") or []
        rows.append((f"overhead: the same from the actual send time (pacing lateness left out), {int(at):,} rps",
                     f"+{fmt(ov['added_p99_us_sent'], 0)} µs (median of {len(reps)} repetitions: "
                     + ", ".join(f"{x:+,}" for x in reps) + " µs); one nginx hop: "
                     f"+{fmt(ov.get('nginx_added_p99_us_sent'), 0)} µs",
                     met(ov["added_p99_us_sent"] <= TARGET_ADDED_P99_US)))
    if ov and (ov.get("added_1conn_us") or {}).get("p99_us") is not None:
        a, n = ov["added_1conn_us"], ov.get("nginx_added_1conn_us") or {}
        rows.append(("(context, no target) added latency with one connection in closed loop, no pacing timer",
                     f"mesh +{fmt(a['p50_us'], 0)} µs p50, +{fmt(a['p99_us'], 0)} µs p99; one nginx hop "
                     f"+{fmt(n.get('p50_us'), 0)} µs p50, +{fmt(n.get('p99_us'), 0)} µs p99", "–"))
    if not ov:
        rows.append(("overhead", "not run (`bash scripts/bench.sh overhead`)", "–"))
    if fa:
        for t in fa["targets"]:
            rows.append((f"faults: {t['target']}", t["measured"], met(t["met"])))
    else:
        rows.append(("faults", "not run (`bash scripts/bench.sh faults`)", "–"))
    rtt = routing_targets(rt) if rt else None
    if rtt:
        rows.append((f"routing: ≤ {TARGET_ROUTING_NS} ns per route + pick at 5,000 providers",
                     f"{fmt(rtt['ours'], 1)} ns at {rtt['n']:,}", met(rtt["ours"] <= TARGET_ROUTING_NS)))
        rows.append((f"routing: flat within {TARGET_ROUTING_FLAT}× from 100 to 5,000 providers",
                     f"slowest / fastest size = {rtt['flat']:.2f}× ({rtt['lo']:,} .. {rtt['hi']:,})",
                     met(rtt["flat"] is not None and rtt["flat"] <= TARGET_ROUTING_FLAT)))
        rows.append((f"routing: ≥ {TARGET_ROUTING_SPEEDUP}× faster than the naive chain at 5,000 providers",
                     f"{rtt['speedup']:,.0f}×", met(rtt["speedup"] is not None and rtt["speedup"] >= TARGET_ROUTING_SPEEDUP)))
    else:
        rows.append(("routing", "not run (`bash scripts/bench.sh routing`)", "–"))
    return ("## Targets (issues 4, 5, 6) against this run\n\nReported, not asserted anywhere.\n\n"
            + table(["target", "measured", ""], rows, ["---", "---", "---"]) + "\n")


def challenge_section(ch):
    out = ["## Challenge scenario", ""]
    if not ch:
        out.append("Not run yet: `bash scripts/bench.sh challenge`.")
        return "\n".join(out) + "\n"
    p = ch["params"]
    sims = ", ".join(f'{s["name"]} (knee {s["knee"]}, weight {s["weight"]})' for s in p["sims"])
    out.append(
        "The 2018 topology on this box: etcd; three provider simulators, "
        f'{p["sim_latency_ms"]} ms per call, thread cap {p["sim_threads"]} each (status 100 beyond it), latency '
        f'growing past the knee ({sims}); a provider agent in front of each, registered with '
        f'`--max-concurrency {p["provider_max_concurrency"]}` (one shard each, pinned round-robin); one consumer '
        "agent (default shards). Capacity: small 200 threads / 100 ms at the cap = 2,000/s, medium and large "
        "200 / 50 ms = 4,000/s each, 10,000/s in all; with `c` connections each waiting 50 ms at best the ceiling "
        "is min(c / 50 ms, 10,000)."
    )
    out.append("")
    out.append(
        f'Each run: wait for the load gate; {p["warmup_s"]:g} s warm-up with the same tool and connections; '
        "restart the simulators (fresh counters, so the shares are the measured run's); "
        f'{p["duration_s"]:g} s measured; CPU of every agent process from /proc/PID/stat (utime + stime) '
        "before and after; the simulators' `served`/`rejected` counters from their stats line on SIGTERM. "
        f"`loadgen`: {p['loadgen']}. `wrk`: {p['wrk']}; its QPS counts 2xx answers only. "
        f"Repetitions: {p['repeat']} (medians below when more than one)."
    )
    out.append("")
    bv = p.get("balancer_variants")
    if bv:
        out.append("Balancer variants, both at every connection count (interleaved: the agents are restarted with "
                   "the other variant between them, etcd and the simulators stay up): "
                   + "; ".join(f"**{k}**: {v}" for k, v in bv.items() if k in p.get("balancers", bv)) + ".")
    else:
        out.append("Balancer: the providers' weights 1 : 2 : 3 (this run predates the balancer variants).")
    out.append("")
    variants = [v for v in ("weights", "adaptive") if any(variant_of(s) == v for s in ch["summary"])]
    rows = []
    for s in sorted(ch["summary"], key=lambda s: (s["connections"], variants.index(variant_of(s)),
                                                  s["tool"] != "loadgen")):
        runs = [r for r in ch["runs"] if r["tool"] == s["tool"] and r["connections"] == s["connections"]
                and variant_of(r) == variant_of(s)]
        r0 = runs[0]
        by = r0.get("cpu_us_per_req_by_agent") or {}
        prov = sum(v for k, v in by.items() if k.startswith("provider_") and v is not None)
        errs = ", ".join(f"{k} {v:,}" for k, v in sorted(r0["errors_by_kind"].items())) or "0"
        rej = sum(r0["sim_rejected"].values())
        t = TARGET_RATIO.get(s["connections"])
        share = s["provider_share"]
        rows.append((
            s["connections"], variant_of(s), s["tool"], fmt(s["qps"], 0), fmt(s["ceiling"], 0), pct(s["ratio"]),
            f"{t * 100:.0f}%" if t else "–", errs if len(runs) == 1 else fmt(s["errors"], 0), f'{rej:,}',
            fmt(s["p50_ms"], 1), fmt(s["p99_ms"], 1),
            f'{share["small"] * 100:.0f} / {share["medium"] * 100:.0f} / {share["large"] * 100:.0f}',
            f'{fmt(by.get("consumer"), 0)} + {fmt(prov, 0)} = {fmt(s["cpu_us_per_req"], 0)}',
            f'{r0["load_gate"]["loadavg_1m"]:.2f}' + (f' (waited {r0["load_gate"]["waited_s"]:.0f} s)'
                                                    if r0["load_gate"]["waited_s"] else ""),
            fmt(r0.get("other_cpu_s"), 1),
        ))
    out.append(table(
        ["conns", "balancer", "tool", "QPS", "ceiling", "ratio", "target", "errors", "sim rejections (status 100)",
         "p50 ms", "p99 ms", "share small / medium / large %", "agents' CPU µs/req: consumer + providers = total",
         "load avg before", "other CPU s"], rows))
    out.append("")
    refs = ch.get("reference") or []
    if refs:
        out.append(
            "Reference, same run, no agent: loadgen straight to a simulator with the same 50 ms and no cap or knee "
            "(the mesh idle meanwhile) — "
            + "; ".join(f'{r["connections"]} connections: {fmt(r["qps"], 0)} QPS = {pct(r["ratio"])} of the ceiling, '
                        f'mean {r["mean_ms"]:.2f} ms, p50 {r["p50_ms"]:.2f} ms, p99 {r["p99_ms"]:.2f} ms'
                        for r in refs)
            + ". The simulator's timer overshoots 50 ms, so this is the most any proxy can reach here; "
            "the mesh's share of the gap is the difference between the two.")
        out.append("")
    out.append("![QPS vs connections](bench/challenge_qps.svg)")
    out.append("")
    comp = balancer_comparison(ch)
    if comp:
        out.append("Issue 6: the adaptive balancer with no configured weights against the 1:2:3 weights "
                   "(loadgen, answers checked; medians when repeated):")
        out.append("")
        out.append(table(["conns", "weights 1:2:3 + round robin QPS", "adaptive, no weights QPS", "adaptive / weights",
                          "target: adaptive ≥ weights"],
                         [(c["connections"], fmt(c["weights_qps"], 0), fmt(c["adaptive_qps"], 0),
                           f'{c["ratio"] * 100:.1f}%', met(c["met"])) for c in comp]))
        out.append("")
    out.append("Columns: *errors* are loadgen's failed calls by kind (wrong answers included) or wrk's non-2xx "
               "answers and socket errors; *sim rejections* are calls the simulators answered with status 100 "
               "(thread pool exhausted) — calls the consumer agent sent to a provider already at its cap; *share* "
               "is each simulator's part of the calls served during the measured run (weights 1 : 2 : 3 = 17 / 33 / "
               "50%; the adaptive balancer follows the providers' speed instead); *other CPU s* is the CPU used during the measured run by processes that are not the benchmark's "
               "(other users of the machine; kernel threads not counted): near 0 means the run had the box to itself.")
    out.append("")
    notes = []
    for r in ch["runs"]:
        r = dict(r, tool=f'{r["tool"]} ({variant_of(r)})')
        if r["errors"]:
            notes.append(f'{r["tool"]} at {r["connections"]} connections: {r["errors"]:,} errors '
                         f'({", ".join(f"{k} {v:,}" for k, v in r["errors_by_kind"].items())}).')
        rej = sum(r["sim_rejected"].values())
        if rej:
            notes.append(f'{r["tool"]} at {r["connections"]} connections: the simulators rejected {rej:,} calls '
                         "with status 100.")
        if not r["load_gate"]["quiet"]:
            notes.append(f'{r["tool"]} at {r["connections"]} connections ran with the load average at '
                         f'{r["load_gate"]["loadavg_1m"]:.2f} after waiting {r["load_gate"]["waited_s"]:.0f} s.')
        if (r.get("other_cpu_s") or 0) > 0.5:
            notes.append(f'{r["tool"]} at {r["connections"]} connections: other processes used '
                         f'{r["other_cpu_s"]:.1f} CPU s during the run (shared box).')
    idle = p.get("agents_idle_cpu_pct") or {}
    if idle and all(isinstance(v, dict) for v in idle.values()):  # per balancer variant
        for var, d in idle.items():
            notes.append(f"Agents' CPU with no traffic ({var}; 3 s, % of one core): "
                         + ", ".join(f"{k} {v}" for k, v in d.items()) + ".")
    elif idle:
        notes.append("Agents' CPU with no traffic (3 s, % of one core): "
                     + ", ".join(f"{k} {v}" for k, v in idle.items()) + ".")
    if notes:
        out.append("Recorded in this run:")
        out.append("")
        out.extend(f"- {n}" for n in notes)
        out.append("")
    return "\n".join(out) + "\n"


def overhead_section(ov):
    out = ["## Overhead: per-hop cost against nginx", ""]
    if not ov:
        out.append("Not run yet: `bash scripts/bench.sh overhead`.")
        return "\n".join(out) + "\n"
    p = ov["params"]
    out.append(
        f"One provider simulator at 0 ms with no thread cap (`{p['sim']}`), and the same offered load through "
        "three paths, interleaved in one run (the order of the three rotates between repetitions):"
    )
    out.append("")
    out.append("- **direct**: loadgen → simulator over Dubbo (`--target dubbo://`, hessian2), one call in flight per "
               "connection;")
    out.append("- **mesh**: loadgen → consumer agent (HTTP) → provider agent → simulator; static provider list, "
               "no etcd; both agents with their default shards (one per core);")
    m = re.search(r"worker_processes (\S+?),", p.get("nginx_proxy", ""))
    workers = m.group(1) if m else "auto"
    out.append(f"- **nginx**: loadgen → nginx as a reverse proxy (`benches/nginx/proxy.conf`: worker_processes "
               f"{workers}, upstream keepalive, access log off) → a trivial HTTP responder "
               "(`benches/nginx/responder.conf`: a second nginx, one worker, `return 200 \"0\"`).")
    out.append("")
    out.append(
        f"Loads: open loop at {', '.join(f'{r:,}' for r in p['rates'])} requests/s (latency measured from the "
        f"intended send time, so stalls are not hidden) and a closed loop (max rate), both on {p['connections']} "
        "connections; then one connection in closed loop (each path at its own pace: the plain round trip). "
        f"{p['warmup_s']:g} s warm-up inside each loadgen run, {p['duration_s']:g} s measured, {p['repeat']} "
        "repetitions; medians below. CPU is read from /proc before and after the measured part: the two agents "
        "summed for the mesh, every nginx process of the proxy (master and workers) for nginx; the simulator "
        "and the responder are the backends and are not counted in the hop."
    )
    out.append("")
    d = ov["paths"].get("direct", {})
    first = str(p["rates"][0]) if p.get("rates") else None
    if first in d and "1conn" in d:
        precise = any(r.get("pacing") == "precise" for r in ov["runs"])
        if precise:
            out.append(
                "Reading the latencies: loadgen paces open-loop calls precisely (`--pacing precise`, the default: a "
                "timer thread releases each call within tens of microseconds of its due time) and measures each "
                "call both from its intended send time (*p50/p99 µs*: no coordinated omission, a stalled server "
                "shows) and from the moment it was actually written (*sent p50/p99 µs*: the server's and the "
                "network's part only); *late p50/p99 µs* is how late calls were sent after their due time. The "
                f"direct path's p50 is {fmt(d[first]['p50_us'], 0)} µs at {int(first):,} rps against "
                f"{fmt(d['1conn']['p50_us'], 0)} µs for a plain round trip on one connection. Differences between "
                "paths at the same rate are what the comparison is about; the added p99 is given from both origins.")
        else:
            out.append(
                "Reading the latencies: in this run loadgen paced open-loop calls with tokio's millisecond timer "
                "wheel and measured each call from its intended send time, so every open-loop latency carries up to "
                f"a millisecond of pacing lateness, the same on every path: the direct path's p50 is "
                f"{fmt(d[first]['p50_us'], 0)} µs at {int(first):,} rps against {fmt(d['1conn']['p50_us'], 0)} µs "
                "for a plain round trip on one connection. Differences between paths at the same rate are "
                "meaningful; absolute open-loop latencies are not. (loadgen now paces precisely by default and also "
                "reports the latency from the actual send time; re-run `scripts/bench.sh overhead` for those.)")
        out.append("")
    out.append(
        "loadgen checks every answer, and nginx's responder can only return a fixed body, so the main "
        "comparison runs all three paths with `--max-len 0`: every parameter is the empty string, whose hash is "
        "0, and the responder returns `0` — the HTTP requests to the consumer agent and to nginx are then "
        "byte-for-byte the same, and every answer on every path is checked. The same direct and mesh runs with "
        "the challenge's bodies (0..1024 characters) follow, to show what the body size costs."
    )
    out.append("")
    rows = []
    for l in ov["paths"].get("direct", {}):
        for path in ("direct", "mesh", "nginx"):
            d = ov["paths"].get(path, {}).get(l)
            if not d:
                continue
            cpu = d["cpu_us_per_req"]
            extra = ""
            if path == "mesh" and d.get("cpu_us_per_req_by_agent"):
                b = d["cpu_us_per_req_by_agent"]
                extra = f' ({fmt(b["consumer"], 1)} + {fmt(b["provider"], 1)})'
            rows.append((
                load_label(l), path, fmt(d["qps"], 0), fmt(d["p50_us"], 0),
                fmt(d["p90_us"], 0), fmt(d["p99_us"], 0), fmt(d["p999_us"], 0),
                fmt(d.get("sent_p50_us"), 0), fmt(d.get("sent_p99_us"), 0),
                fmt(d.get("late_p50_us"), 0), fmt(d.get("late_p99_us"), 0), fmt(d["errors"], 0),
                (fmt(cpu, 1) + extra) if cpu is not None else "–",
                fmt(d.get("context_switches_per_req"), 2), fmt(d["backend_cpu_us_per_req"], 1),
                fmt(d.get("other_cpu_s"), 1),
            ))
    out.append(table(["load", "path", "QPS", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "sent p50 µs",
                      "sent p99 µs", "late p50 µs", "late p99 µs", "errors",
                      "hop CPU µs/req (consumer + provider)", "hop context switches/req",
                      "backend CPU µs/req", "other CPU s"], rows))
    out.append("")
    ratios = ov.get("cpu_ratio_by_load_reps", {})
    out.append("CPU ratio (agents' CPU per request / nginx's), per repetition: "
               + "; ".join(f"{load_label(l)}: "
                           + ", ".join(f"{x:.2f}" for x in xs) for l, xs in ratios.items())
               + f". Added p99 at {int(ov.get('added_p99_us_at', 1000)):,} rps (mesh − direct), per repetition: "
               + ", ".join(f"{x:+,} µs" for x in ov.get("added_p99_us_reps", []))
               + ("; from the actual send time: " + ", ".join(f"{x:+,} µs" for x in ov["added_p99_us_sent_reps"])
                  if ov.get("added_p99_us_sent_reps") else "") + ".")
    out.append("")
    out.append("![latency percentiles per path](bench/overhead_latency.svg)")
    out.append("")
    out.append("![CPU per request](bench/overhead_cpu.svg)")
    out.append("")
    cb = [(k, ov["paths"][k]) for k in ("direct_challenge_bodies", "mesh_challenge_bodies") if k in ov["paths"]]
    if cb:
        out.append("With the challenge's bodies (parameter 0..1024 characters, `--max-len 1024`):")
        out.append("")
        rows = []
        for l in cb[0][1]:
            for k, per in cb:
                d = per.get(l)
                if not d:
                    continue
                rows.append((load_label(l), k.split("_")[0], fmt(d["qps"], 0),
                             fmt(d["p50_us"], 0), fmt(d["p99_us"], 0), fmt(d["errors"], 0),
                             fmt(d["cpu_us_per_req"], 1) if d["cpu_us_per_req"] is not None else "–"))
        out.append(table(["load", "path", "QPS", "p50 µs", "p99 µs", "errors", "hop CPU µs/req"], rows))
        out.append("")
    prof = ov.get("profile")
    if prof:
        out.append(profile_section(prof, p))
    notes = []
    for r in ov["runs"]:
        if r["errors"]:
            notes.append(f'{r["path"]} at {r["load"]} (max-len {r["max_len"]}, repetition {r["rep"] + 1}): '
                         f'{r["errors"]:,} errors ({", ".join(f"{k} {v:,}" for k, v in r["errors_by_kind"].items())}).')
        if not r["load_gate"]["quiet"]:
            notes.append(f'{r["path"]} at {r["load"]} (max-len {r["max_len"]}, repetition {r["rep"] + 1}) ran with '
                         f'the load average at {r["load_gate"]["loadavg_1m"]:.2f} after waiting '
                         f'{r["load_gate"]["waited_s"]:.0f} s.')
        if (r.get("other_cpu_s") or 0) > 0.5:
            notes.append(f'{r["path"]} at {r["load"]} (max-len {r["max_len"]}, repetition {r["rep"] + 1}): other '
                         f'processes used {r["other_cpu_s"]:.1f} CPU s during the run (shared box; the medians '
                         "absorb one such run).")
    if p.get("idle_cpu_pct"):
        notes.append("CPU with no traffic (3 s, % of one core): "
                     + ", ".join(f"{k} {v}" for k, v in p["idle_cpu_pct"].items()) + ".")
    if notes:
        out.append("Recorded in this run:")
        out.append("")
        out.extend(f"- {n}" for n in notes)
        out.append("")
    return "\n".join(out) + "\n"


def profile_section(prof, p):
    out = ["### Where the time goes (perf, separate unmeasured runs)", ""]
    out.append(
        "After the measured runs, `perf trace -s` counts the system calls of the hop's processes at the fixed "
        "rates, and the tracepoint `io_uring:io_uring_submit_req` the agents' io_uring submissions by opcode "
        "(tracing slows them down, so these runs are not timed; at a fixed open-loop rate the number of "
        "requests in the window is known); `perf record -F 999` (cpu-clock, no call graphs) samples them at "
        "max rate. In this VM the sampling clock is a software timer, so samples pile up where interrupts are "
        "re-enabled (`_raw_spin_unlock_irqrestore`, `finish_task_switch`): the buckets below are a rough guide, "
        "the system-call counts are exact."
    )
    out.append("")
    loads = [l for l in prof.get("mesh", {}) if l != "max"]
    rows = []
    for l in loads:
        for path in ("mesh", "nginx"):
            d = prof.get(path, {}).get(l)
            if not d or d.get("syscalls_per_req") is None:
                continue
            by = ", ".join(f"{k} {v:.2f}" for k, v in d["syscalls_per_req_by_name"].items())
            ops = d.get("io_uring_submissions_per_req_by_op")
            uring = (f'{d["io_uring_submissions_per_req"]:.1f}: ' + ", ".join(f"{k} {v:.2f}" for k, v in ops.items())
                     if ops else "–")
            rows.append((load_label(l), path, fmt(d["syscalls_per_req"], 1), by,
                         fmt(d.get("context_switches_per_req"), 2), uring))
    if rows:
        out.append(table(["load", "hop", "syscalls/req", "by name (per request)", "context switches/req",
                          "io_uring submissions/req, by opcode"], rows,
                         ["---", "---", "---:", "---", "---:", "---"]))
        out.append("")
    mx = [(path, prof[path].get("max")) for path in ("mesh", "nginx") if prof.get(path, {}).get("max")]
    if mx and all(d.get("buckets") for _, d in mx):
        names = []
        for _, d in mx:
            for b in d["buckets"]:
                if b["bucket"] not in names:
                    names.append(b["bucket"])
        rows = []
        for n in names:
            rows.append((n, *[next((f'{b["pct"]:.1f}%' for b in d["buckets"] if b["bucket"] == n), "–")
                              for _, d in mx]))
        counts = ", ".join(f"{path}: {d.get('samples')} samples" for path, d in mx)
        out.append(f"Share of the hop's CPU samples at max rate ({counts}):")
        out.append("")
        out.append(table(["bucket", *[path for path, _ in mx]], rows))
        out.append("")
        for path, d in mx:
            top = d.get("top") or []
            out.append(f"Top symbols, {path} at max rate (full list: `{d.get('text')}`): "
                       + "; ".join(f'{t["sym"]} {t["pct"]:.1f}%' for t in top[:12]) + ".")
            out.append("")
            if d.get("by_thread"):
                out.append(f"By thread ({path}): " + ", ".join(f'{t["thread"]} {t["pct"]:.1f}%'
                                                              for t in d["by_thread"]) + ".")
                out.append("")
    return "\n".join(out)


def analysis_section():
    """benches/analysis.md, written by hand for a given run, included as it is (it is not regenerated)."""
    p = ROOT / "benches" / "analysis.md"
    return p.read_text() if p.exists() else ""


def generic_section():
    """benches/generic.md: the issue 12 cost section (form vs JSON call vs the Dubbo port), rendered from
    generic.json and generic_json.json by benches/report_generic.py for one run and kept as it is."""
    p = ROOT / "benches" / "generic.md"
    return p.read_text() if p.exists() else ""


def howto_section():
    return """## How to run

```sh
bash scripts/bench.sh all          # build, challenge, overhead, faults, drift, codec, routing, then this report
bash scripts/bench.sh challenge    # or one scenario; each ends by regenerating this file from target/bench/*.json
bash scripts/bench.sh overhead
bash scripts/bench.sh generic      # form vs JSON call vs the consumer's Dubbo port (issue 12; not part of `all`)
bash scripts/bench.sh faults
bash scripts/bench.sh codec
bash scripts/bench.sh routing
bash scripts/bench.sh registry     # 5,000 provider instances in etcd under churn (not part of `all`)
bash scripts/bench.sh drift        # provider capacity drifting: adaptive vs static weights vs an oracle (issue 14)
bash scripts/bench.sh memory       # consumer RSS at 0, 1,024 / 10,000 idle and 1,024 busy connections (not part of `all`)
bash scripts/bench.sh report       # only this file and docs/bench/*.svg, from the JSON already there
BENCH_DURATION=10 bash scripts/bench.sh all    # shorter runs
bash scripts/bench-compare.sh REV   # overhead + challenge of REV and of this tree, interleaved (target/bench/compare)
```

Results: `target/bench/challenge.json` (`runs`: one object per run with its `balancer` variant, `summary`:
medians per tool, connection count and variant), `target/bench/overhead.json` (`runs`, `paths`: medians per path
and load, `cpu_ratio`, `added_p99_us`, `added_p99_us_sent`, `profile`), `target/bench/faults.json` (`sent`,
`succeeded`, `failed`, `failed_by_kind`, `longest_gap_ms`, `phases`, `events`, `targets`, `cpu_s_by_phase`,
loadgen's `timeline`), `target/bench/codec.json`, `target/bench/routing.json` (`runs`, `balancers`) with
`codec_meta.json` / `routing_meta.json` (load gate, machine), `target/bench/registry.json` (`runs`: one object
per model with `propagation_p50_ms`, `propagation_p99_ms`, `cpu_us_per_change`, `consumer_rss_mib`,
`etcd_keys`, `etcd_bytes`, `requests`, `failed` and details; `settings`); every run is also printed as one JSON line as it
finishes. The knobs
(durations, connection counts, rates, repetitions, the load gate) are the `BENCH_*` variables listed at the top
of `scripts/bench.sh`. Everything listens on 127.0.0.1 on free ports; every process started is stopped at the
end, also on Ctrl-C. The binaries are copied out of `target/release` before a scenario starts, so a rebuild
during a run changes nothing.

Load gate: this 2-core box is shared with builds and fuzzers. Before every measured run the runner reads the
1-minute load average from /proc/loadavg and, while it is above 1.5, waits (polling every 30 s, at most
10 minutes); the value is recorded with the run either way (`load_gate`), and so is `other_cpu_s`, the CPU
used during the measured run by processes that are not the benchmark's (from a /proc scan before and after;
kernel threads are recorded apart, in `kernel_threads_cpu_s`).
"""


# ------------------------------------------------------------------------------------------------------
# codec section (kept from the current document)


def codec_section(old_doc, codec, meta):
    m = re.search(r"^## Codec micro-benchmarks\n.*?(?=^## |\Z)", old_doc, re.S | re.M)
    if not m:
        return "## Codec micro-benchmarks\n\nSee `crates/mesh-dubbo/benches/codec.rs`; run `bash scripts/bench.sh codec`.\n"
    sec = m.group(0).rstrip() + "\n"
    if not (codec and meta):
        return sec
    run_date = meta["machine"]["date_utc"]
    if run_date in sec:
        return sec  # already this run's
    block = re.search(r"^Machine: .*?(?:^\|.*\|\n)+", sec, re.S | re.M)
    if not block:
        return sec
    mm = meta["machine"]
    valgrind = None
    try:
        valgrind = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    mhz = f", {float(mm['cpu_mhz']):.0f} MHz" if mm.get("cpu_mhz") else ""
    gate = meta["load"]
    new = [
        f"Machine: {mm['nproc']} vCPUs (`nproc` = {mm['nproc']}), `model name: {mm.get('cpu_model')}` in "
        f"/proc/cpuinfo{mhz}, {mm['kernel']}, {mm.get('rustc')}, `bench` profile (release: opt-level 3, fat LTO, "
        f"codegen-units 1)" + (f", {valgrind}" if valgrind else "") + ".",
        "",
        f"Results of one run ({run_date}, `{meta['command']}` from `scripts/bench.sh codec`). The 1-minute load "
        f"average was {gate['loadavg_1m']:.2f} when it started (after waiting {gate['waited_s']:.0f} s for it to "
        f"drop to 1.5 or less) and {gate.get('loadavg_1m_after', 0):.2f} when it ended; on this shared 2-core box "
        "timings are noisy, so compare the median with the best batch, and criterion's estimate from the same run "
        "is given for comparison. Allocation counts do not depend on load: they are exact counts.",
        "",
        "| case | ns/op median | ns/op best batch | criterion estimate | allocs/op | bytes/op | frame bytes |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in codec["results"]:
        est = None
        f = ROOT / "target" / "criterion" / r["case"] / "new" / "estimates.json"
        if f.exists():
            e = json.loads(f.read_text())
            est = (e.get("slope") or e.get("mean") or {}).get("point_estimate")
        allocs = "–" if r.get("allocs_per_op") is None else f'{r["allocs_per_op"]:g}'
        bts = "–" if r.get("bytes_alloc_per_op") is None else f'{r["bytes_alloc_per_op"]:g}'
        new.append(f'| {r["case"]} | {r["ns_per_op"]:.1f} | {r["ns_per_op_min"]:.1f} | '
                   f'{"–" if est is None else f"{est:.1f} ns"} | {allocs} | {bts} | {r["frame_bytes"]} |')
    return sec[: block.start()] + "\n".join(new) + "\n" + sec[block.end():]


# ------------------------------------------------------------------------------------------------------


def main():
    ch = load("challenge.json")
    ov = load("overhead.json")
    fa = load("faults.json")
    rt = load("routing.json")
    rt_meta = load("routing_meta.json")
    rg = load("registry.json")
    mem = load("memory.json")
    rg_others = [
        ("before", load("registry_before.json"),
         "the same benchmark with `BENCH_REGISTRY_LAYOUT=mesh-v1 BENCH_REGISTRY_JSON=registry_before.json` on the "
         "agents before issue 11 (their own layout `/dubbomesh/v1/<service>/<ip:port>`, a snapshot rebuilt whole "
         "per change; no etcd revision in it, so no propagation figure)"),
        ("h-core only", load("registry_core.json"),
         "`BENCH_REGISTRY_JSON=registry_core.json` on the Dubbo layout and the persistent-map snapshot (h-core) "
         "without the incremental route tables (h-incr): every snapshot still rebuilds the shard's table"),
        ("isolation", load("registry_isolation.json"),
         "1 x 5,000, K = 0 and 64, the consumer sharing its cores with etcd, the churn tool, the load generator and "
         "the simulator, then alone on its own core (`BENCH_REGISTRY_MODELS=1x5000 BENCH_REGISTRY_SUBSET=0,64 "
         "BENCH_REGISTRY_ISOLATE=both BENCH_REGISTRY_JSON=registry_isolation.json`)"),
    ]
    codec = load("codec.json")
    meta = load("codec_meta.json")
    old_doc = DOC.read_text() if DOC.exists() else ""
    PLOTS.mkdir(parents=True, exist_ok=True)
    plots = []
    if ch and plot_challenge(ch, PLOTS / "challenge_qps.svg"):
        plots.append(str(PLOTS / "challenge_qps.svg"))
    if ov and plot_overhead_latency(ov, PLOTS / "overhead_latency.svg"):
        plots.append(str(PLOTS / "overhead_latency.svg"))
    if ov and plot_overhead_cpu(ov, PLOTS / "overhead_cpu.svg"):
        plots.append(str(PLOTS / "overhead_cpu.svg"))
    if fa and plot_faults(fa, PLOTS / "faults_timeline.svg"):
        plots.append(str(PLOTS / "faults_timeline.svg"))
    if rt and plot_routing(rt, PLOTS / "routing.svg"):
        plots.append(str(PLOTS / "routing.svg"))
    drift = load("drift.json")
    drift_plot = None
    if drift and plot_drift(drift, PLOTS / "drift.svg", Svg, nice_max):
        plots.append(str(PLOTS / "drift.svg"))
        drift_plot = "bench/drift.svg"
    mem_plot = None
    if mem and plot_memory(mem, PLOTS / "memory_rss.svg", Svg, nice_max):
        plots.append(str(PLOTS / "memory_rss.svg"))
        mem_plot = "bench/memory_rss.svg"

    parts = [
        "# Benchmarks",
        "",
        "<!-- Generated by benches/report.py from target/bench/*.json (bash scripts/bench.sh). Edit the generator, "
        "not this file; the codec section is kept from the previous version and its results table is rebuilt "
        "when the codec bench is re-run. -->",
        "",
        "Published together: the 2018 challenge scenario (QPS against the ceiling, with our checking load "
        "generator and with `wrk`, with the providers' 1:2:3 weights and with the adaptive balancer and no "
        "weights), the cost of the mesh per hop against one nginx hop (CPU per request and added latency, in one "
        "run), the fault benchmark (a provider agent killed, etcd stopped, a planned restart, all under load), "
        "routing and balancing at 100 to 5,000 providers against a naive per-call chain, and the codec "
        "micro-benchmarks.",
        "",
        targets_section(ch, ov, rt, fa),
        machine_section(ch, ov, meta, fa, rt_meta),
        challenge_section(ch),
        overhead_section(ov),
        analysis_section(),
        generic_section(),
        faults_section(fa),
        drift_section(drift, drift_plot),
        routing_section(rt, rt_meta),
        registry_section(rg, table, rg_others),
        memory_section(mem, table, mem_plot),
        codec_section(old_doc, codec, meta),
        howto_section(),
    ]
    text = "\n".join(p.rstrip("\n") + "\n" if p else "" for p in parts)
    text = re.sub(r"\n{3,}", "\n\n", text)
    DOC.write_text(text)
    print(f"report: wrote {DOC}" + (f" and {', '.join(plots)}" if plots else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
