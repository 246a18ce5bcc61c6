#!/usr/bin/env python3
"""The largest change of each host's rate between two consecutive windows, at every phase.

Reads swarmlab's per-host byte counters (`--save-logs DIR` keeps them as DIR/net.jsonl:
one line per sample, [unix_time, {"pI": [rx_bytes, tx_bytes], ...}], rx being host I's
upload) and, for each host and direction, slides two adjacent windows of WINDOW seconds
over the run in steps of STEP seconds, comparing their average rates: a Zabbix trigger on
abs(change(net.if.in)) with that item interval sees at most this difference, whatever
phase its samples fall on.

    python3 scripts/check-slew.py DIR/net.jsonl [WINDOW_S=10] [LIMIT_MBIT=5.5] [STEP_S=0.25]

Prints the worst host per direction and every host above LIMIT; exits 1 if any is above it.
The span checked runs from the first sample where any host moves bytes to the last one.
"""
import bisect
import json
import sys


def load(path):
    times, series = [], {}
    with open(path) as f:
        for line in f:
            try:
                t, counters = json.loads(line)
            except ValueError:
                continue  # a line cut short when the sampler stopped
            times.append(t)
            for port, (rx, tx) in counters.items():
                series.setdefault(port, []).append((rx, tx))
    return times, series


def at(times, values, t):
    """Counter value at time t, linear between samples."""
    i = bisect.bisect_left(times, t)
    if i <= 0:
        return values[0]
    if i >= len(times):
        return values[-1]
    t0, t1 = times[i - 1], times[i]
    v0, v1 = values[i - 1], values[i]
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0) if t1 > t0 else v1


def main():
    path = sys.argv[1]
    window = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    limit = float(sys.argv[3]) if len(sys.argv) > 3 else 5.5
    step = float(sys.argv[4]) if len(sys.argv) > 4 else 0.25
    times, series = load(path)
    hosts = {p: v for p, v in series.items() if p.startswith("p") and len(v) == len(times)}
    active = [i for i in range(1, len(times))
              if any(v[i] != v[i - 1] for v in hosts.values())]
    if not active:
        sys.exit("no traffic in " + path)
    start, end = times[active[0] - 1], times[active[-1]]
    worst = {"up": (0.0, None, 0.0), "down": (0.0, None, 0.0)}
    over = []
    for port, values in sorted(hosts.items(), key=lambda kv: int(kv[0][1:])):
        for d, col in (("up", 0), ("down", 1)):
            c = [v[col] for v in values]
            best = (0.0, 0.0)
            t = start - window
            while t + window <= end:  # the windows may reach past either end, where the host is idle
                a = at(times, c, t + window) - at(times, c, t)
                b = at(times, c, t + 2 * window) - at(times, c, t + window)
                diff = abs(b - a) * 8 / window / 1e6
                if diff > best[0]:
                    best = (diff, t + window - start)
                t += step
            if best[0] > worst[d][0]:
                worst[d] = (best[0], port, best[1])
            if best[0] > limit:
                over.append(f"{port} {d}: {best[0]:.2f} Mbit/s at {best[1]:.0f} s")
    span = end - start
    print(f"{len(hosts)} hosts, {span:.0f} s of traffic, windows of {window:g} s, phase step {step:g} s")
    for d in ("up", "down"):
        v, port, when = worst[d]
        print(f"  worst {d:4}: {v:.2f} Mbit/s ({port}, windows meeting {when:.0f} s after the first byte)")
    if over:
        print(f"above {limit:g} Mbit/s:\n  " + "\n  ".join(over))
        sys.exit(1)
    print(f"every host within {limit:g} Mbit/s in both directions")


if __name__ == "__main__":
    main()
