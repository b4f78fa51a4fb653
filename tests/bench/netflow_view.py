#!/usr/bin/env python3
"""The NetFlow view of METRICS.md: what an operator's flow tools read.

nfdump's nfpcapd turns each trace into flow records (-e 300,60); per 300 s
window (span/10 for traces shorter than 3000 s), over the windows active on
either side, the relative error |synth - real| / max(real, 1) of flows,
packets, bytes, distinct source and destination addresses and distinct
destination ports; the figure is the mean of their six medians (0: the same
NetFlow statistics). Also: the share of the real top-10 destination ports (by
flows) found in the synthetic top 10.

Usage: netflow_view.py REAL.pcap SYNTH.pcap   (prints one JSON object)
Needs nfdump and editcap (Debian packages nfdump and wireshark-common, which
deploy/install-deps.sh installs).
"""
import csv
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone


def flows_of(pcap, work):
    out = tempfile.mkdtemp(prefix="nf-", dir=work)
    # nfpcapd reads classic pcap only: pcapng (and compressed captures) go
    # through editcap first.
    classic = os.path.join(out, "in.pcap")
    subprocess.run(["editcap", "-F", "pcap", pcap, classic], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["nfpcapd", "-r", classic, "-w", out, "-e", "300,60"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.remove(classic)
    text = subprocess.run(["nfdump", "-R", out, "-o", "csv", "-q", "-N"], check=True,
                          capture_output=True, text=True).stdout
    flows = []
    for row in csv.reader(text.splitlines()):
        if len(row) < 13 or not row[0][:1].isdigit():
            continue
        ts = datetime.strptime(row[0], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
        te = datetime.strptime(row[1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
        flows.append({"ts": ts, "te": te, "sa": row[3], "da": row[4], "dp": row[6],
                      "pkts": int(float(row[11])), "bytes": int(float(row[12]))})
    return flows


def view(real, synth):
    if not real:
        return {"figure": None, "error": "no flow records in the real trace"}
    t0 = min(f["ts"] for f in real)
    span = max(f["te"] for f in real) - t0
    short = span < 3000
    w = 300.0 if not short else max(span / 10.0, 1.0)

    def per_window(flows):
        out = {}
        for f in flows:
            # Short traces have exactly ten windows: the last record (at t0 + span) falls in the tenth.
            k = math.floor((f["ts"] - t0) / w)
            if short and k == 10 and f["ts"] - t0 <= span:
                k = 9
            e = out.setdefault(k, {"flows": 0, "packets": 0, "bytes": 0, "src": set(), "dst": set(), "dport": set()})
            e["flows"] += 1
            e["packets"] += f["pkts"]
            e["bytes"] += f["bytes"]
            e["src"].add(f["sa"])
            e["dst"].add(f["da"])
            e["dport"].add(f["dp"])
        return out

    r, s = per_window(real), per_window(synth)
    empty = {"flows": 0, "packets": 0, "bytes": 0, "src": set(), "dst": set(), "dport": set()}
    medians = {}
    for key in ("flows", "packets", "bytes", "src", "dst", "dport"):
        errs = []
        for k in sorted(set(r) | set(s)):
            a, b = r.get(k, empty)[key], s.get(k, empty)[key]
            if isinstance(a, set):
                a, b = len(a), len(b)
            errs.append(abs(b - a) / max(a, 1))
        medians[key] = statistics.median(errs)

    def top10(flows):
        count = {}
        for f in flows:
            count[f["dp"]] = count.get(f["dp"], 0) + 1
        return set(p for p, _ in sorted(count.items(), key=lambda x: (-x[1], x[0]))[:10])

    rt, st = top10(real), top10(synth)
    return {"figure": sum(medians.values()) / len(medians), "medians": medians, "window_s": w,
            "windows": len(set(r) | set(s)), "real_records": len(real), "synth_records": len(synth),
            "top10_dport_share": len(rt & st) / max(len(rt), 1)}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    for tool, package in (("nfpcapd", "nfdump"), ("nfdump", "nfdump"), ("editcap", "wireshark-common")):
        if shutil.which(tool) is None:
            sys.exit("netflow_view.py: %s is not installed (Debian package %s; deploy/install-deps.sh installs it)" %
                     (tool, package))
    work = tempfile.mkdtemp(prefix="dgc-netflow-")
    try:
        print(json.dumps(view(flows_of(sys.argv[1], work), flows_of(sys.argv[2], work))))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
