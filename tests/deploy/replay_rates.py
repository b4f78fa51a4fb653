#!/usr/bin/env python3
"""Figures for tests/deploy/replay_test.sh, read from classic pcap files.

  replay_rates.py first PCAP    epoch second (floor) of the first packet
  replay_rates.py check ...     counts and 1 s rate errors; exit 1 on a failed check

Bytes are IP bytes (the IP total length, or IPv6 payload length + 40), so raw-IP
and Ethernet files compare alike. Relative errors are METRICS.md's
|synth - real| / max(real, 1), over the windows active on either side.
"""
import argparse
import json
import re
import statistics
import struct
import sys

ETHERNET, RAW, SLL, SLL2 = 1, 101, 113, 276


def network_layer(link, frame):
    """The IP packet inside a frame, or None when it carries none."""
    if link == RAW:
        return frame
    if link == ETHERNET:
        off, etype = 14, frame[12:14]
        while etype in (b"\x81\x00", b"\x88\xa8") and len(frame) >= off + 4:  # VLAN tags
            etype = frame[off + 2:off + 4]
            off += 4
    elif link == SLL:
        off, etype = 16, frame[14:16]
    elif link == SLL2:
        off, etype = 20, frame[0:2]
    else:
        raise SystemExit("link type %d is not read here (raw IP, Ethernet, Linux SLL and SLL2 are)" % link)
    return frame[off:] if etype in (b"\x08\x00", b"\x86\xdd") else None


def read_pcap(path):
    """(ts_ns, ip_bytes) per packet, and the link type."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise SystemExit("%s: not a pcap (%d bytes)" % (path, len(data)))
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise SystemExit("%s: not a classic pcap (magic %s)" % (path, magic.hex()))
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    link = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
    off = 24
    out = []
    while off + 16 <= len(data):
        sec, frac, caplen, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        frame = data[off + 16:off + 16 + caplen]
        off += 16 + caplen
        ip = network_layer(link, frame)
        if ip is None:
            continue
        if len(ip) < 20:
            continue
        if ip[0] >> 4 == 6:
            n = struct.unpack(">H", ip[4:6])[0] + 40
        else:
            n = struct.unpack(">H", ip[2:4])[0]
        out.append((sec * 10**9 + (frac if nano else frac * 1000), n))
    return out, link


def cut(packets, start_ns, seconds):
    end = start_ns + int(seconds * 1e9)
    return [p for p in packets if start_ns <= p[0] < end]


def series(packets, start_ns, n):
    pk, by = [0] * n, [0] * n
    for ts, size in packets:
        w = (ts - start_ns) // 10**9
        if 0 <= w < n:
            pk[w] += 1
            by[w] += size
    return pk, by


def median_error(synth, real):
    errs = [abs(s - r) / max(r, 1) for s, r in zip(synth, real) if s or r]
    return statistics.median(errs) if errs else 0.0


def rates(a, a_start, b, b_start, n):
    """Median per-window errors of series a against reference b."""
    ap, ab = series(a, a_start, n)
    bp, bb = series(b, b_start, n)
    return {"packets": median_error(ap, bp), "bytes": median_error(ab, bb)}


def tcpreplay_counts(log):
    text = open(log).read()
    get = lambda k: int(re.search(k + r":\s+(\d+)", text).group(1)) if re.search(k + r":\s+(\d+)", text) else None
    return {"successful": get("Successful packets"), "failed": get("Failed packets"),
            "truncated": get("Truncated packets")}


def tcpdump_dropped(log):
    m = re.search(r"(\d+) packets dropped by kernel", open(log).read())
    return int(m.group(1)) if m else None


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "first":
        pk, _ = read_pcap(sys.argv[2])
        if not pk:
            raise SystemExit("%s: no IP packet" % sys.argv[2])
        print(min(p[0] for p in pk) // 10**9)
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["check"])
    ap.add_argument("--real", required=True)
    ap.add_argument("--synth", required=True)
    ap.add_argument("--rewritten", required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--rewrite-warnings", type=int, default=0)
    ap.add_argument("--timed", nargs=3, required=True, metavar=("CAP", "REPLAY_LOG", "TCPDUMP_LOG"))
    ap.add_argument("--topspeed", nargs=3, required=True, metavar=("CAP", "REPLAY_LOG", "TCPDUMP_LOG"))
    ap.add_argument("--summary")
    a = ap.parse_args()

    real_all, _ = read_pcap(a.real)
    start = min(p[0] for p in real_all) // 10**9 * 10**9
    real = cut(real_all, start, a.seconds)
    synth, synth_link = read_pcap(a.synth)
    rewritten, _ = read_pcap(a.rewritten)
    n = int(a.seconds)
    fail = []
    out = {"window_s": 1, "windows": n, "real_packets": len(real), "synth_packets": len(synth),
           "rewritten_packets": len(rewritten), "tcprewrite_warnings": a.rewrite_warnings}
    if synth_link != ETHERNET:
        fail.append("generate --full-packets wrote link type %d, not Ethernet" % synth_link)
    if len(rewritten) != len(synth):
        fail.append("tcprewrite kept %d of %d packets" % (len(rewritten), len(synth)))
    if not synth:
        fail.append("the regenerated trace is empty")
    synth_first = min(p[0] for p in synth) if synth else 0
    for name, (cap, rlog, dlog) in (("timed", a.timed), ("topspeed", a.topspeed)):
        got, _ = read_pcap(cap)
        c = tcpreplay_counts(rlog)
        drop = tcpdump_dropped(dlog)
        r = {"tcpreplay": c, "captured": len(got), "kernel_dropped": drop}
        if c["failed"] != 0 or c["truncated"] not in (0, None):
            fail.append("%s: tcpreplay reports %s" % (name, c))
        if c["successful"] != len(synth):
            fail.append("%s: tcpreplay sent %s of %d packets" % (name, c["successful"], len(synth)))
        if len(got) != len(synth):
            fail.append("%s: captured %d of %d packets" % (name, len(got), len(synth)))
        if drop != 0:
            fail.append("%s: tcpdump reports %s packets dropped by the kernel" % (name, drop))
        if name == "timed" and got:
            # The capture's windows are the regenerated trace's, shifted by
            # the replay's offset: the median of each packet's capture time
            # less its time in the trace (every packet arrives, in order),
            # so a late first packet (tcpreplay starting up) does not shift
            # every window; by the first packets only when some were lost.
            if len(got) == len(synth):
                offsets = [g - s for g, s in zip(sorted(p[0] for p in got), sorted(p[0] for p in synth))]
                got_start = start + int(statistics.median(offsets))
            else:
                got_start = start + (min(p[0] for p in got) - synth_first)
            r["vs_regenerated"] = rates(got, got_start, synth, start, n)
            r["vs_real"] = rates(got, got_start, real, start, n)
            for k, v in r["vs_regenerated"].items():
                if v > 0.05:
                    fail.append("timed replay: %s per second median error %.3f against the regenerated trace (> 0.05)" % (k, v))
        if got:
            span = (max(p[0] for p in got) - min(p[0] for p in got)) / 1e9
            r["replay_span_s"] = round(span, 3)
        out[name] = r
    out["regenerated_vs_real"] = rates(synth, start, real, start, n)
    t, s = out["timed"], out["topspeed"]
    print("replay of %d regenerated packets (%d real, first %d s), tcprewrite warnings %d" %
          (len(synth), len(real), n, a.rewrite_warnings))
    print("  %-9s %10s %8s %9s %8s %10s" % ("replay", "sent", "failed", "captured", "dropped", "span s"))
    for name, r in (("timed", t), ("topspeed", s)):
        print("  %-9s %10s %8s %9d %8s %10s" % (name, r["tcpreplay"]["successful"], r["tcpreplay"]["failed"],
                                            r["captured"], r["kernel_dropped"], r.get("replay_span_s")))
    if "vs_regenerated" in t:
        print("  1 s windows, median relative error: packets/s, bytes/s")
        print("    timed capture vs regenerated  %.3f  %.3f" % (t["vs_regenerated"]["packets"], t["vs_regenerated"]["bytes"]))
        print("    timed capture vs real         %.3f  %.3f" % (t["vs_real"]["packets"], t["vs_real"]["bytes"]))
    print("    regenerated vs real           %.3f  %.3f" % (out["regenerated_vs_real"]["packets"],
                                                            out["regenerated_vs_real"]["bytes"]))
    if a.summary:
        with open(a.summary, "w") as f:
            json.dump(out, f, indent=2)
    for f in fail:
        print("FAIL:", f)
    return 1 if fail else 0


if __name__ == "__main__":
    sys.exit(main())
