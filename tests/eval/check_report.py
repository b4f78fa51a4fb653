#!/usr/bin/env python3
"""Validates an HTML report written by `dgcctl eval --report`.

    check_report.py REPORT.html

Checks that the file parses as HTML (balanced tags) and as XML, that it holds
one inline <svg id="metric-NAME"> per metric of METRICS.md and the three
per-window series, that every plot of a metric with values draws both sides,
and that nothing refers to an external asset. Exit status 0 when it is valid;
otherwise the problems are printed on stderr and the status is 1.
"""
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

METRICS = ["pkt_size", "pkt_iat", "throughput", "pkt_rate", "proto", "src_port", "dst_port",
           "ttl", "tcp_flags", "src_ip_rank", "dst_ip_rank", "flow_size", "flow_bytes",
           "flow_duration", "flow_start", "flow_iat", "src_fanout"]
SERIES = ["series-packets", "series-bytes", "series-src"]
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}
SVG = "{http://www.w3.org/2000/svg}"


class Checker(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.problems, self.svg_ids = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("script", "link", "img", "iframe", "object", "embed"):
            self.problems.append("external or active element <%s>" % tag)
        for k in ("src", "href", "xlink:href"):
            if k in a and not (a[k] or "").startswith("#"):
                self.problems.append("reference to %r in <%s>" % (a[k], tag))
        if tag == "svg":
            self.svg_ids.append(a.get("id"))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append("unbalanced </%s> (open: %s)" % (tag, self.stack[-3:]))
            return
        self.stack.pop()


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    text = open(sys.argv[1], encoding="utf-8").read()
    problems = []
    p = Checker()
    p.feed(text)
    p.close()
    problems += p.problems
    if p.stack:
        problems.append("unclosed tags: %s" % p.stack)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        problems.append("not well-formed XML: %s" % e)
        root = None
    if root is not None:
        svgs = {s.get("id"): s for s in root.iter(SVG + "svg")}
        for name in ["metric-" + m for m in METRICS] + SERIES:
            s = svgs.get(name)
            if s is None:
                problems.append("no <svg id=%r>" % name)
                continue
            lines = list(s.iter(SVG + "polyline"))
            texts = " ".join("".join(t.itertext()) for t in s.iter(SVG + "text"))
            if name.startswith("metric-") and "n/a" not in texts and len(lines) < 2:
                problems.append("%s draws %d lines, not real and synthetic" % (name, len(lines)))
            for line in lines:
                pts = line.get("points", "").split()
                if not pts or any(len(xy.split(",")) != 2 for xy in pts):
                    problems.append("%s has a malformed polyline" % name)
                    break
                for xy in pts:
                    x, y = (float(v) for v in xy.split(","))
                    if x != x or y != y or abs(x) > 1e5 or abs(y) > 1e5:
                        problems.append("%s has a point outside the plot: %s" % (name, xy))
                        break
    for m in METRICS:
        if ("metric-" + m) not in p.svg_ids:
            problems.append("HTML parser saw no svg for %s" % m)
    if problems:
        for pr in problems:
            print("check_report: " + pr, file=sys.stderr)
        sys.exit(1)
    print("ok: %d svg, %d bytes" % (len(p.svg_ids), len(text)))


if __name__ == "__main__":
    main()
