#!/usr/bin/env python3
"""Renders the "Generic calls" section of docs/benchmarks.md (issue 12 item 5) from target/bench/generic.json
and target/bench/generic_json.json, to stdout (python3 standard library only):

    python3 benches/report_generic.py [BENCH_OUT dir]  > benches/generic.md

benches/report.py includes benches/generic.md as it is (after the overhead analysis) whenever it renders
docs/benchmarks.md, so the section survives re-renders from a target/bench without generic.json.
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target" / "bench"

LABEL = {
    "direct": "direct `hash` (Dubbo → simulator)",
    "direct-user": "direct `echoUser` (Dubbo → simulator)",
    "form": "form `hash` (HTTP → agents)",
    "json": "JSON `echoUser` (HTTP → agents)",
    "dubbo-port": "Dubbo port `hash` (Dubbo → agents)",
    "dubbo-port-user": "Dubbo port `echoUser` (Dubbo → agents)",
}


def n(x, nd=0):
    if x is None:
        return "–"
    return f"{x:,.{nd}f}"


def signed(x):
    return "–" if x is None else f"{x:+,.0f}"


def main():
    g = json.loads((OUT / "generic.json").read_text())
    micro_path = OUT / "generic_json.json"
    micro = json.loads(micro_path.read_text()) if micro_path.exists() else None
    p = g["params"]
    m = g["machine"]
    loads = [str(r) for r in p["rates"]] + (["max"] if any("max" in v for v in g["variants"].values()) else [])
    gates = [r["load_gate"]["loadavg_1m"] for r in g["runs"]]
    print("## Generic calls: form, JSON and the Dubbo port (issue 12)")
    print()
    print(f"One run of `scripts/bench.sh generic` ({m['date_utc']}, code `{m['commit']}`"
          + (f", uncommitted: {', '.join(m['uncommitted_changes'])}" if m.get("uncommitted_changes") else "")
          + f"; {m['nproc']} cores, {m['cpu_model']}). The overhead scenario's set-up (one `provider-sim` at 0 ms, no "
          "thread cap, one worker; provider agent; consumer agent with a static provider, now also with "
          "`--dubbo-listen`), and in one run, interleaved (the order rotates per repetition), the same offered load "
          "through six variants:")
    print()
    print("- **form**: the challenge form, `hash(\"\")` (`--max-len 0`), HTTP → consumer agent → provider agent → simulator;")
    print("- **JSON**: the JSON API, `POST /mesh-bench/<interface>/echoUser` with a fixed body, a POJO argument "
          "(`User`: long, String, int, boolean; typed by `x-dubbo-service-method-overloading`) and a map answer "
          "(5 entries) rendered as JSON, every answer parsed and compared by loadgen (`--call user`);")
    print("- **Dubbo port**: hessian2 Dubbo frames to the consumer agent's `--dubbo-listen` port, `hash(\"\")` and "
          "`echoUser`, one call in flight per connection, every answer checked by id and value;")
    print("- **direct**: the same Dubbo calls straight to the simulator (the baseline of added latency: `hash` for "
          "form and Dubbo port `hash`, `echoUser` for JSON and Dubbo port `echoUser`).")
    print()
    print(f"{p['connections']} connections, open loop at {', '.join(n(r) for r in p['rates'])} requests/s and a "
          f"closed loop (max rate); {p['warmup_s']:g} s warm-up inside each loadgen run, {p['duration_s']:g} s "
          f"measured, {p['repeat']} repetitions, medians below. Latencies from the intended send time (precise "
          "pacing). CPU: the two agents' utime + stime from /proc over the measured part, per answered request. "
          f"Load gate {p['max_load']}: 1-minute load average at the start of the runs "
          f"{min(gates):.2f}–{max(gates):.2f} (other sessions were compiling on this 2-core box; the `other CPU s` "
          "column is CPU used by processes outside the benchmark during each run). Added latency: the variant's "
          "percentile minus its direct baseline's in the same repetition (median over repetitions); not given at "
          "max rate, where every variant runs at its own rate.")
    print()
    print("| load | variant | QPS | p50 µs | p99 µs | added p50 µs | added p99 µs | errors | agents' CPU µs/req (consumer + provider) | simulator CPU µs/req | other CPU s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for load in loads:
        for name, per in g["variants"].items():
            row = per.get(load)
            if not row:
                continue
            by = row.get("cpu_us_per_req_by_agent")
            cpu = "–" if row["cpu_us_per_req"] is None else (
                f"{n(row['cpu_us_per_req'], 1)} ({n(by['consumer'], 1)} + {n(by['provider'], 1)})")
            lname = "max rate" if load == "max" else f"{n(int(load))} rps"
            if load == "max":
                # Closed loop: each variant runs at its own rate, so latencies are not the same offered load.
                row = dict(row, added_p50_us=None, added_p99_us=None)
            print(f"| {lname} | {LABEL.get(name, name)} | {n(row['qps'])} | {n(row['p50_us'])} | {n(row['p99_us'])} | "
                  f"{signed(row.get('added_p50_us'))} | {signed(row.get('added_p99_us'))} | {n(row['errors'])} | {cpu} | "
                  f"{n(row['sim_cpu_us_per_req'], 1)} | {n(row['other_cpu_s'], 1)} |")
    print()
    extra = g.get("cpu_us_per_req_over_form", {})
    if extra:
        print("Agents' CPU per request over the form call, per repetition (same load, same repetition):")
        print()
        for name, per in extra.items():
            parts = [f"{'max rate' if l == 'max' else n(int(l)) + ' rps'}: "
                     + ", ".join(signed(x) for x in v["reps"]) + " µs" for l, v in per.items()]
            print(f"- {LABEL.get(name, name)}: " + "; ".join(parts))
        print()
    if micro:
        print("The JSON work itself, in process (`cargo bench -p mesh-testkit --bench generic_json`: the functions the "
              "consumer agent calls, median of 41 batches of ~5 ms):")
        print()
        print("| per call | form `hash` ns | JSON `echoUser` ns |")
        print("|---|---:|---:|")
        print(f"| request: HTTP parse + form / JSON call parse (JSON → Hessian values) + Dubbo encode | "
              f"{n(micro['form_request_ns'])} | {n(micro['json_request_ns'])} |")
        print(f"| answer: Dubbo decode + render (text / Hessian map → JSON) | {n(micro['form_answer_ns'])} | "
              f"{n(micro['json_answer_ns'])} |")
        print()
        print(f"The JSON work: **{n(micro['json_work_ns'])} ns per call** more than the form's.")
        print()


if __name__ == "__main__":
    main()
