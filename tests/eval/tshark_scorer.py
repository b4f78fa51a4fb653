#!/usr/bin/env python3
"""Independent reference scorer for dgc's fidelity metrics (METRICS.md).

Reads two captures through `tshark -T fields` (not through dgc's parser) and
computes the 17 Jensen-Shannon distances in plain Python (standard library
only), so that `dgcctl eval -o json` can be held against it metric by metric.

    tshark_scorer.py REAL SYNTH            JSON on stdout: {"metrics": {...}, ...}
    tshark_scorer.py --dump CAPTURE        one line per IP packet, for debugging

Field semantics (what METRICS.md asks, as tshark exposes it):
  - The outermost IP header counts: frame.protocols names the layers in order;
    the first "ip" or "ipv6" decides the family, and every multi-valued field
    (ICMP errors, IP-in-IP, GRE, Teredo print several values) is read at the
    occurrence that belongs to that outer header, which is the first one.
  - proto: ip.proto, or for IPv6 the next header after the extension headers
    that follow the outer header in frame.protocols (hop-by-hop, routing,
    fragment, destination options, AH).
  - size: ip.len; ipv6.plen + 40 (a jumbogram: ipv6.opt.jumbo + 40).
  - ports only when the outer proto is TCP, UDP or SCTP; tcp_flags only for
    TCP, the low 8 bits of tcp.flags.
  - IP reassembly is turned off, so that each fragment is its own packet as in
    dgc: the first fragment carries the ports, later ones carry none.
  - ts: frame.time_epoch, parsed to integer nanoseconds.

Choices METRICS.md leaves open are made as common/eval/metrics.h documents
(window count, clamping of the last packet, real span 0, flow_start overflow).
"""

import argparse
import json
import math
import subprocess
import sys
from collections import Counter, defaultdict

FIELDS = [
    "frame.time_epoch", "frame.protocols",
    "ip.src", "ip.dst", "ip.proto", "ip.len", "ip.ttl",
    "ipv6.src", "ipv6.dst", "ipv6.nxt", "ipv6.plen", "ipv6.hlim", "ipv6.opt.jumbo",
    "ipv6.hopopts.nxt", "ipv6.routing.nxt", "ipv6.fraghdr.nxt", "ipv6.dstopts.nxt",
    "ah.next_header",
    "tcp.srcport", "tcp.dstport", "tcp.flags",
    "udp.srcport", "udp.dstport", "sctp.srcport", "sctp.dstport",
]
F = {name: i for i, name in enumerate(FIELDS)}

# frame.protocols names of IPv6 extension headers -> the field holding their next header.
EXT_NEXT = {
    "ipv6.hopopts": "ipv6.hopopts.nxt",
    "ipv6.routing": "ipv6.routing.nxt",
    "ipv6.fraghdr": "ipv6.fraghdr.nxt",
    "ipv6.dstopts": "ipv6.dstopts.nxt",
    "ah": "ah.next_header",
}
PORT_FIELDS = {6: ("tcp.srcport", "tcp.dstport"), 17: ("udp.srcport", "udp.dstport"),
               132: ("sctp.srcport", "sctp.dstport")}
IDLE_NS = 60 * 10**9
SECOND_NS = 10**9

METRICS = ["pkt_size", "pkt_iat", "throughput", "pkt_rate", "proto", "src_port", "dst_port",
           "ttl", "tcp_flags", "src_ip_rank", "dst_ip_rank", "flow_size", "flow_bytes",
           "flow_duration", "flow_start", "flow_iat", "src_fanout"]


def nth(values, i=0):
    """The i-th comma-separated value of a tshark field, or None."""
    if not values:
        return None
    parts = values.split(",")
    return parts[i] if i < len(parts) and parts[i] != "" else None


def to_int(s, default=0):
    if s is None:
        return default
    return int(s, 16) if s.startswith("0x") else int(s)


def parse_ts(s):
    if not s:
        return 0  # tshark prints nothing for a record without a timestamp; dgc reads 0
    sec, _, frac = s.partition(".")
    neg = sec.startswith("-")
    ns = abs(int(sec)) * SECOND_NS + int((frac + "000000000")[:9])
    return -ns if neg else ns


def read_capture(path):
    """Packets as tuples (ts_ns, src, dst, proto, sport, dport, size, ttl, flags);
    returns (packets, frames, non_ip)."""
    cmd = ["tshark", "-n", "-r", path, "-o", "ip.defragment:FALSE",
           "-o", "ipv6.defragment:FALSE", "-T", "fields", "-E", "separator=/t",
           "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in FIELDS:
        cmd += ["-e", f]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0 and not proc.stdout:
        sys.exit("tshark failed on %s: %s" % (path, proc.stderr.decode(errors="replace")))
    packets, frames, non_ip = [], 0, 0
    for line in proc.stdout.decode(errors="replace").split("\n"):
        if not line:
            continue
        frames += 1
        c = line.split("\t")
        c += [""] * (len(FIELDS) - len(c))
        layers = c[F["frame.protocols"]].split(":")
        outer = next((i for i, l in enumerate(layers) if l in ("ip", "ipv6")), None)
        if outer is None:
            non_ip += 1
            continue
        if layers[outer] == "ip":
            src, dst = nth(c[F["ip.src"]]), nth(c[F["ip.dst"]])
            proto = to_int(nth(c[F["ip.proto"]]))
            size = to_int(nth(c[F["ip.len"]]))
            ttl = to_int(nth(c[F["ip.ttl"]]))
        else:
            src, dst = nth(c[F["ipv6.src"]]), nth(c[F["ipv6.dst"]])
            proto = to_int(nth(c[F["ipv6.nxt"]]))
            seen = Counter()
            for layer in layers[outer + 1:]:
                if layer not in EXT_NEXT:
                    break
                v = nth(c[F[EXT_NEXT[layer]]], seen[layer])
                seen[layer] += 1
                if v is not None:
                    proto = to_int(v)
            plen = to_int(nth(c[F["ipv6.plen"]]))
            jumbo = nth(c[F["ipv6.opt.jumbo"]])
            size = (to_int(jumbo) if plen == 0 and jumbo is not None else plen) + 40
            ttl = to_int(nth(c[F["ipv6.hlim"]]))
        if src is None or dst is None:
            non_ip += 1
            continue
        sport = dport = flags = 0
        if proto in PORT_FIELDS:
            sf, df = PORT_FIELDS[proto]
            sport, dport = to_int(nth(c[F[sf]])), to_int(nth(c[F[df]]))
        if proto == 6:
            flags = to_int(nth(c[F["tcp.flags"]])) & 0xFF
        packets.append((parse_ts(c[F["frame.time_epoch"]]), src, dst, proto, sport, dport, size,
                        ttl, flags))
    packets.sort(key=lambda p: p[0])  # stable
    return packets, frames, non_ip


# --- distances ---------------------------------------------------------------

def js_distance(p_counts, q_counts):
    """scipy.spatial.distance.jensenshannon(p, q, base=2) of two aligned count lists."""
    tp, tq = float(sum(p_counts)), float(sum(q_counts))
    if tq == 0:
        return 1.0
    total = 0.0
    for a, b in zip(p_counts, q_counts):
        p, q = a / tp, b / tq
        m = (p + q) / 2
        if p > 0:
            total += p * math.log(p / m)
        if q > 0:
            total += q * math.log(q / m)
    js = total / 2 / math.log(2)
    return math.sqrt(min(1.0, max(0.0, js)))


def hist_distance(real_values, synth_values):
    """None (n/a) when the real side has no values. Values as lists or Counters."""
    r, s = Counter(real_values), Counter(synth_values)
    if not +r:
        return None
    keys = sorted(set(r) | set(s))
    return js_distance([r[k] for k in keys], [s[k] for k in keys])


def rank_distance(real_counts, synth_counts):
    if not real_counts:
        return None
    r = sorted(real_counts, reverse=True)
    s = sorted(synth_counts, reverse=True)
    n = max(len(r), len(s))
    r += [0] * (n - len(r))
    s += [0] * (n - len(s))
    return js_distance(r, s)


def log_bin(x):
    return 0 if x < 1 else 1 + math.floor(10 * math.log10(x))


# --- per-trace values ----------------------------------------------------------

def window_def(real_span):
    """W as (num_ns, den): 1 s, or real span / 100 for spans under 100 s."""
    if real_span <= 0 or real_span >= 100 * SECOND_NS:
        return SECOND_NS, 1
    return real_span, 100


def trace_values(packets, wnum, wden, real_span):
    """Every value list the 17 metrics histogram, for one trace."""
    v = defaultdict(list)
    if not packets:
        return v
    t0, t_end = packets[0][0], packets[-1][0]
    span = t_end - t0
    nwin = max(1, -(-span * wden // wnum))
    # Only non-empty windows are stored: a synthetic trace may span years at a
    # window of milliseconds. The empty ones are added to bin 0 below.
    win_pk, win_by = Counter(), Counter()
    flows = {}      # 5-tuple -> index of its current flow
    flow_list = []  # [first, last, packets, bytes]
    per_src, per_dst = Counter(), Counter()
    dsts_of = defaultdict(set)
    prev = None
    for ts, src, dst, proto, sport, dport, size, ttl, flags in packets:
        v["pkt_size"].append(size)
        if prev is not None:
            v["pkt_iat"].append(log_bin((ts - prev) / 1000))
        prev = ts
        v["proto"].append(proto)
        v["src_port"].append(sport)
        v["dst_port"].append(dport)
        v["ttl"].append(ttl)
        if proto == 6:
            v["tcp_flags"].append(flags)
        w = min((ts - t0) * wden // wnum, nwin - 1)
        win_pk[w] += 1
        win_by[w] += size
        per_src[src] += 1
        per_dst[dst] += 1
        dsts_of[src].add(dst)
        key = (src, dst, sport, dport, proto)
        fi = flows.get(key)
        if fi is None or ts - flow_list[fi][1] > IDLE_NS:
            fi = flows[key] = len(flow_list)
            flow_list.append([ts, ts, 0, 0])
        f = flow_list[fi]
        f[1] = ts
        f[2] += 1
        f[3] += size
    empty = nwin - len(win_pk)
    v["throughput"] = Counter(log_bin(b) for b in win_by.values())
    v["pkt_rate"] = Counter(log_bin(p) for p in win_pk.values())
    if empty:
        v["throughput"][0] += empty
        v["pkt_rate"][0] += empty
    v["src_rank"] = list(per_src.values())
    v["dst_rank"] = list(per_dst.values())
    v["src_fanout"] = [log_bin(len(d)) for d in dsts_of.values()]
    for first, last, npk, nby in flow_list:
        dur = last - first
        v["flow_size"].append(log_bin(npk))
        v["flow_bytes"].append(log_bin(nby))
        v["flow_duration"].append(log_bin(dur / 1000))
        if npk >= 2:
            v["flow_iat"].append(log_bin(dur / (npk - 1) / 1000))
        if real_span <= 0:
            b = 0 if first == t0 else 100
        else:
            b = min((first - t0) * 100 // real_span, 100)
        v["flow_start"].append(b)
    v["_flows"] = len(flow_list)
    return v


def score(real, synth):
    real_span = real[-1][0] - real[0][0] if real else 0
    wnum, wden = window_def(real_span)
    r = trace_values(real, wnum, wden, real_span)
    s = trace_values(synth, wnum, wden, real_span)
    out = {}
    for m in METRICS:
        if m == "src_ip_rank":
            out[m] = rank_distance(r["src_rank"], s["src_rank"])
        elif m == "dst_ip_rank":
            out[m] = rank_distance(r["dst_rank"], s["dst_rank"])
        else:
            out[m] = hist_distance(r[m], s[m])
    scored = [x for x in out.values() if x is not None]
    return {
        "window_s": wnum / wden / 1e9,
        "metrics": out,
        "scored": len(scored),
        "mean": sum(scored) / len(scored) if scored else None,
        "worst": max(scored) if scored else None,
        "flows": {"real": r["_flows"], "synth": s["_flows"]},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("captures", nargs="+", help="REAL SYNTH, or one capture with --dump")
    ap.add_argument("--dump", action="store_true", help="print the packets of one capture")
    args = ap.parse_args()
    if args.dump:
        packets, _, _ = read_capture(args.captures[0])
        for p in packets:
            print("\t".join(str(x) for x in p))
        return
    if len(args.captures) != 2:
        ap.error("need REAL and SYNTH")
    real, rframes, rnon = read_capture(args.captures[0])
    synth, sframes, snon = read_capture(args.captures[1])
    result = score(real, synth)
    result["real"] = {"frames": rframes, "ip_packets": len(real), "non_ip": rnon}
    result["synth"] = {"frames": sframes, "ip_packets": len(synth), "non_ip": snon}
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
