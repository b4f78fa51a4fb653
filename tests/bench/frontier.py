#!/usr/bin/env python3
"""The frontier of fidelity against kept bytes, per trace (tests/bench/frontier.sh runs it).

For each trace: dgc (`dgcctl compress --budget B`, then `generate`) at every budget B,
given as a fraction of zstd -19 of the trace's header-only pcap; and at the bytes dgc
kept, packet sampling 1:N (N chosen so its kept bytes match), flow records (flow-sampled
1:N below their full size), and the independent marginals (one point, their own size).
Every regenerated trace is scored by `dgcctl eval` (METRICS.md: mean and worst of the 17,
the 60 s distinct-count medians) and by the NetFlow view (netflow_view.py, nfdump's
nfpcapd). Prints one table and writes OUT/frontier.json and OUT/frontier.html (kept bytes,
log scale, against the mean; one curve per method).

Usage: frontier.py --out DIR [--budgets 0.01x,0.03x,0.1x,0.3x,1x] NAME=PATH:CHUNK_SECONDS...
Bytes kept by dgc are the chunks' stored bytes; a base model (trained once per trace
with `dgcctl warmup` on the same trace, as compress would inline) is paid once and is
reported apart, not in the frontier.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


class Scorer:
    def __init__(self, ctl, real):
        self.ctl, self.real = ctl, real

    def score(self, synth):
        e = json.loads(run([self.ctl, "eval", self.real, synth, "-o", "json"]))
        s = e["scores"]
        uc = s.get("use_case", {})
        m1 = uc.get("60s") or uc.get("w10")  # short traces: 10 W stands in for the minute
        distinct = {k: m1[k]["median"] for k in ("src", "dst", "pairs", "tuples")} if m1 else {}
        nf = json.loads(run([sys.executable, os.path.join(HERE, "netflow_view.py"), self.real, synth]))
        return {"mean": s["mean"], "worst": s["worst"], "worst_metric": s["worst_metric"],
                "distinct_60s": distinct, "distinct_window_s": m1["window_s"] if m1 else None,
                "netflow": nf.get("figure"), "metrics": s["metrics"]}


def frontier(ctl, name, path, chunk, budgets, out):
    work = os.path.join(out, name)
    os.makedirs(work, exist_ok=True)
    storage = json.loads(run([ctl, "storage", path, "-o", "json"]))
    hdr = next(r["bytes"] for r in storage["rows"] if r["id"] == "header_zstd19")
    packets = storage["packets"]
    scorer = Scorer(ctl, path)
    rows = []
    base = os.path.join(work, "base.dgcm")
    t0 = time.time()
    run([ctl, "warmup", path, "-o", base, "--chunk-seconds", str(chunk)])
    base_s = time.time() - t0

    def add(method, setting, kept, synth, extra=None):
        r = {"trace": name, "method": method, "setting": setting, "kept_bytes": kept,
             "x_hdr_zstd19": kept / hdr if hdr else None}
        r.update(scorer.score(synth))
        if extra:
            r.update(extra)
        rows.append(r)
        print("  %-10s %-14s %9d B %7.4fx  mean %.3f  worst %.3f %-13s  60s-distinct %s  nfdump %s" % (
            method, setting, kept, r["x_hdr_zstd19"], r["mean"], r["worst"], r["worst_metric"],
            "/".join("%.2f" % v for v in r["distinct_60s"].values()) or "-",
            "%.3f" % r["netflow"] if r["netflow"] is not None else "-"), flush=True)

    flows_full = json.loads(run([ctl, "baseline", "--method", "flows", path, "-o", os.path.join(work, "flows.pcap"),
                                 "--summary", "json"]))["kept_bytes"]
    print("%s: %d packets, header-only zstd -19 %d B, flow records + zstd -19 %d B (%.4fx); base %.0f s" % (
        name, packets, hdr, flows_full, flows_full / hdr, base_s), flush=True)
    for b in budgets:
        lib = os.path.join(work, "lib-" + b)
        subprocess.run(["rm", "-rf", lib], check=True)
        t0 = time.time()
        c = json.loads(run([ctl, "compress", path, "--library", lib, "--base", base, "--chunk-seconds", str(chunk),
                            "--budget", b, "-o", "json"]))
        comp_s = time.time() - t0
        synth = os.path.join(work, "dgc-" + b + ".pcap")
        t0 = time.time()
        run([ctl, "generate", "--library", lib, "-o", synth])
        gen_s = time.time() - t0
        kept = c["stored_bytes"]
        add("dgc", b, kept, synth, {"split": c.get("stored_split"), "exact_flows": c.get("exact_flows"),
                                    "compress_cpu_s": c.get("cpu_seconds"), "compress_s": comp_s,
                                    "generate_s": gen_s})
        # The others at the bytes dgc kept: 1:N raised until they keep no more
        # (compressed, a sample shrinks slower than 1/N).
        for method, full, out_name in (("sampling", hdr, "sampling-%s.pcap" % b), ("flows", flows_full,
                                                                                   "flows-%s.pcap" % b)):
            out_path = os.path.join(work, out_name)
            n = max(1, math.ceil(full / max(kept, 1)))
            for _ in range(6):
                got = json.loads(run([ctl, "baseline", "--method", method, "--rate", "1:%d" % n, path, "-o",
                                      out_path, "--summary", "json"]))
                if got["kept_bytes"] <= kept * 1.05 or got["kept_records"] <= 1:
                    break
                n = max(n + 1, math.ceil(n * got["kept_bytes"] / max(kept, 1)))
            add(method, "1:%d" % n, got["kept_bytes"], out_path)
    m_out = os.path.join(work, "marginals.pcap")
    m = json.loads(run([ctl, "baseline", "--method", "marginals", path, "-o", m_out, "--summary", "json"]))
    add("marginals", "-", m["kept_bytes"], m_out)
    # Flow records at their own full size, and dgc at that byte count: the yardstick.
    add("flows", "all", flows_full, os.path.join(work, "flows.pcap"))
    return {"trace": name, "path": path, "chunk_seconds": chunk, "packets": packets, "hdr_zstd19": hdr,
            "flows_full_bytes": flows_full, "base_seconds": base_s, "rows": rows}


def html(results):
    colors = {"dgc": "#d62728", "sampling": "#1f77b4", "flows": "#2ca02c", "marginals": "#9467bd"}
    parts = ["<!doctype html><meta charset=utf-8><title>dgc frontier</title>",
             "<style>body{font:14px sans-serif;margin:2em}svg{border:1px solid #ccc;margin:0 1em 1em 0}</style>",
             "<h1>Fidelity against kept bytes</h1><p>Mean of the 17 metrics (METRICS.md; lower is better) "
             "against the bytes kept, log scale; one curve per method. dgc's base model is paid once and "
             "left out.</p>"]
    for res in results:
        pts = [r for r in res["rows"] if r["mean"] is not None and r["kept_bytes"] > 0]
        if not pts:
            continue
        w, h, pad = 520, 320, 50
        xs = [math.log10(r["kept_bytes"]) for r in pts]
        x0, x1 = math.floor(min(xs)), math.ceil(max(xs))
        x1 = max(x1, x0 + 1)
        y1 = max(0.5, max(r["mean"] for r in pts) * 1.1)
        X = lambda b: pad + (math.log10(b) - x0) / (x1 - x0) * (w - 2 * pad)
        Y = lambda m: h - pad - m / y1 * (h - 2 * pad)
        svg = ['<svg width="%d" height="%d" xmlns="http://www.w3.org/2000/svg">' % (w, h),
               '<text x="%d" y="18" font-weight="bold">%s</text>' % (pad, res["trace"])]
        for d in range(x0, x1 + 1):
            svg.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/>' % (X(10 ** d), pad, X(10 ** d), h - pad))
            svg.append('<text x="%.1f" y="%d" font-size="11" text-anchor="middle">1e%d B</text>' % (X(10 ** d), h - pad + 16, d))
        for k in range(6):
            m = y1 * k / 5
            svg.append('<text x="%d" y="%.1f" font-size="11" text-anchor="end">%.2f</text>' % (pad - 4, Y(m) + 4, m))
        for method, col in colors.items():
            mp = sorted((r for r in pts if r["method"] == method), key=lambda r: r["kept_bytes"])
            if not mp:
                continue
            svg.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>' % (
                col, " ".join("%.1f,%.1f" % (X(r["kept_bytes"]), Y(r["mean"])) for r in mp)))
            for r in mp:
                svg.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s %s: %d B, mean %.3f, '
                           'nfdump %s</title></circle>' % (X(r["kept_bytes"]), Y(r["mean"]), col, method,
                                                           r["setting"], r["kept_bytes"], r["mean"], r["netflow"]))
        for i, (method, col) in enumerate(colors.items()):
            svg.append('<text x="%d" y="%d" fill="%s" font-size="12">%s</text>' % (w - pad - 70, pad + 14 * i, col, method))
        svg.append("</svg>")
        parts.append("".join(svg))
    parts.append("<h2>Table</h2><table border=1 cellpadding=3><tr><th>trace<th>method<th>setting<th>kept B"
                 "<th>x hdr zstd19<th>mean<th>worst<th>worst metric<th>60 s distinct src/dst/pairs/5-tuples"
                 "<th>nfdump view</tr>")
    for res in results:
        for r in res["rows"]:
            parts.append("<tr><td>%s<td>%s<td>%s<td>%d<td>%.4f<td>%.3f<td>%.3f<td>%s<td>%s<td>%s</tr>" % (
                r["trace"], r["method"], r["setting"], r["kept_bytes"], r["x_hdr_zstd19"], r["mean"], r["worst"],
                r["worst_metric"], "/".join("%.2f" % v for v in r["distinct_60s"].values()),
                "%.3f" % r["netflow"] if r["netflow"] is not None else "-"))
    parts.append("</table>")
    return "\n".join(parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--budgets", default="0.01x,0.03x,0.1x,0.3x,1x")
    ap.add_argument("--dgcctl", default=os.path.join(ROOT, "build", "coordinator", "dgcctl", "dgcctl"))
    ap.add_argument("traces", nargs="+", help="NAME=PATH:CHUNK_SECONDS")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    results = []
    for t in a.traces:
        name, rest = t.split("=", 1)
        path, chunk = rest.rsplit(":", 1)
        results.append(frontier(a.dgcctl, name, path, float(chunk), a.budgets.split(","), a.out))
        with open(os.path.join(a.out, "frontier.json"), "w") as f:
            json.dump(results, f, indent=1)
        with open(os.path.join(a.out, "frontier.html"), "w") as f:
            f.write(html(results))
    print("wrote %s and %s" % (os.path.join(a.out, "frontier.json"), os.path.join(a.out, "frontier.html")))


if __name__ == "__main__":
    main()
