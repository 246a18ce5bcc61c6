#!/usr/bin/env python3
"""Plot a Starling rollout from Prometheus: per-host upload and download rate against the
host-wide caps, and download progress, over time.

    scripts/plot-rollout.py --prometheus http://127.0.0.1:9090 --start 1700000000 --end 1700000060 \
        --save-json run.json --output docs/rollout-capped.png
    scripts/plot-rollout.py --from-json run.json --output docs/rollout-capped.png

Needs matplotlib (Debian: python3-matplotlib; or pip install matplotlib). Uses only the
standard library to talk to Prometheus (/api/v1/query_range).
"""
import argparse
import json
import sys
import time
import urllib.parse
import urllib.request

QUERIES = {
    "up": 'sum by (instance) (rate(starling_wire_bytes_total{{direction="up"{sel}}}[{w}]))',
    "down": 'sum by (instance) (rate(starling_wire_bytes_total{{direction="down"{sel}}}[{w}]))',
    "cap_up": 'max by (instance) (starling_rate_cap_bytes_per_second{{direction="up"{sel}}})',
    "cap_down": 'max by (instance) (starling_rate_cap_bytes_per_second{{direction="down"{sel}}})',
    "progress": 'min by (instance) (starling_download_progress_ratio{{{sel0}}})',
}


def query_range(base, expr, start, end, step):
    qs = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{base.rstrip('/')}/api/v1/query_range?{qs}", timeout=30) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise SystemExit(f"query failed: {expr}: {body.get('error')}")
    return body["data"]["result"]


def fetch(args):
    sel0 = f'job=~"{args.job}"'
    sel = "," + sel0
    data = {"start": args.start, "end": args.end, "step": args.step, "series": {}}
    for name, q in QUERIES.items():
        expr = q.format(sel=sel, sel0=sel0, w=args.window)
        data["series"][name] = query_range(args.prometheus, expr, args.start, args.end, args.step)
    return data


def by_instance(results):
    out = {}
    for r in results:
        inst = r["metric"].get("instance", "?")
        out[inst] = ([float(t) for t, _ in r["values"]], [float(v) for _, v in r["values"]])
    return out


def plot(data, output, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = float(data["start"])
    series = {k: by_instance(v) for k, v in data["series"].items()}
    hosts = sorted(set(series["up"]) | set(series["down"]) | set(series["progress"]),
                   key=lambda h: tuple(int(x) if x.isdigit() else x for x in h.replace(":", ".").split(".")))
    colors = {h: plt.cm.tab10(i % 10) for i, h in enumerate(hosts)}
    mbit = 8 / 1e6

    fig, axes = plt.subplots(3, 1, figsize=(11, 10), sharex=True,
                             gridspec_kw={"height_ratios": [3, 3, 2]})
    for ax, d, word in [(axes[0], "up", "Upload"), (axes[1], "down", "Download")]:
        caps_drawn = set()
        for h in hosts:
            if h in series[d]:
                ts, vs = series[d][h]
                ax.plot([t - t0 for t in ts], [v * mbit for v in vs], color=colors[h], lw=1.4, label=h)
            if h in series[f"cap_{d}"]:
                ts, vs = series[f"cap_{d}"][h]
                if any(v > 0 for v in vs):
                    ax.plot([t - t0 for t in ts], [v * mbit if v > 0 else float("nan") for v in vs],
                            color=colors[h], lw=1.0, ls="--", alpha=0.8)
                    caps_drawn.add(round(max(vs) * mbit, 1))
        capnote = f" (dashed: host cap, {', '.join(f'{c:g}' for c in sorted(caps_drawn))} Mbit/s)" if caps_drawn else " (no cap)"
        ax.set_title(f"{word} rate per host, peer wire{capnote}", fontsize=11)
        ax.set_ylabel("Mbit/s")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylim(top=axes[0].get_ylim()[1] * 1.15)
    axes[0].legend(loc="upper center", fontsize=8, ncol=6, title="host", framealpha=0.9)
    for h in hosts:
        if h in series["progress"]:
            ts, vs = series["progress"][h]
            axes[2].plot([t - t0 for t in ts], [v * 100 for v in vs], color=colors[h], lw=1.4)
    axes[2].set_title("Download progress per host", fontsize=11)
    axes[2].set_ylabel("%")
    axes[2].set_ylim(0, 105)
    axes[2].set_xlabel("seconds since start")
    axes[2].grid(True, alpha=0.3)
    fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    print(f"wrote {output}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prometheus", help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    p.add_argument("--from-json", help="read a JSON saved with --save-json instead of querying")
    p.add_argument("--save-json", help="also save the query_range results here")
    p.add_argument("--start", type=float, help="unix time (default: end - 120 s)")
    p.add_argument("--end", type=float, help="unix time (default: now)")
    p.add_argument("--step", default="1s")
    p.add_argument("--window", default="5s", help="rate() window; at least 4 scrape intervals")
    p.add_argument("--job", default="starling.*", help="regex on the job label (default starling.*)")
    p.add_argument("--title", default="Starling rollout: per-host rate against the cap")
    p.add_argument("--output", default="docs/rollout-capped.png")
    args = p.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            data = json.load(f)
    elif args.prometheus:
        args.end = args.end or time.time()
        args.start = args.start or args.end - 120
        data = fetch(args)
        if args.save_json:
            with open(args.save_json, "w") as f:
                json.dump(data, f)
    else:
        p.error("give --prometheus or --from-json")
    plot(data, args.output, args.title)


if __name__ == "__main__":
    sys.exit(main())
