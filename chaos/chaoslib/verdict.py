"""The verdict: one dict with fixed keys (the Rust test suite parses them), a table, JSON.

Common keys: scenario, seed, duration_s, rate_asked, rate_achieved, published, acked, unacked,
refused, at_cloud, lost, lost_sample, duplicates, duplicate_requests, order_violations,
restarts, recover_ms {count, median, p99, max} (None without recoveries), bars {name: bool},
pass; plus the scenario's own keys from `extra`.
"""

import json
import math
import statistics


def summary_ms(values):
    """{count, median, p99, max} of a list of ms, or None when empty."""
    if not values:
        return None
    v = sorted(values)
    p99 = v[max(0, math.ceil(0.99 * len(v)) - 1)]  # nearest rank
    return {"count": len(v), "median": round(statistics.median(v), 1), "p99": round(p99, 1), "max": round(v[-1], 1)}


def verdict(ctx, driver, cloud, extra, bars, restarts=0, recoveries=None):
    """Build the verdict. `bars` maps name -> bool; `extra` holds scenario keys (notes too)."""
    b = driver.book
    delivered = cloud.delivered_ids()
    with b.lock:
        acked = set(b.acked)
        published, unacked, refused = b.published, b.unacked, b.refused
    lost = sorted(acked - delivered)
    stats = cloud.stats()
    out = {
        "scenario": ctx.scenario,
        "seed": ctx.args.seed,
        "duration_s": round(ctx.args.duration, 3),
        "rate_asked": ctx.args.rate,
        "rate_achieved": round(driver.achieved_rate(), 1),
        "published": published,
        "acked": len(acked),
        "unacked": unacked,
        "refused": refused,
        "at_cloud": len(delivered),
        "lost": len(lost),
        "lost_sample": [f"{d}#{n}" for d, n in lost[:10]],
        "duplicates": len(cloud.duplicate_ids()),
        "duplicate_requests": stats["duplicate_requests"],
        "order_violations": stats["order_violations"],
        "restarts": restarts,
        "recover_ms": summary_ms(recoveries or []),
    }
    out.update(extra)
    out["bars"] = dict(bars)
    out["pass"] = all(bars.values())
    return out


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".") if v != int(v) or abs(v) < 1e15 else str(v)
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def print_table(v):
    rows = [(k, _fmt(val)) for k, val in v.items() if k not in ("bars", "pass")]
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 40)
    print(line)
    print(f"{'metric'.ljust(width)} | value")
    print(line)
    for k, val in rows:
        print(f"{k.ljust(width)} | {val}")
    print(line)
    for name, ok in v["bars"].items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    print(line)
    print(f"VERDICT: {'PASS' if v['pass'] else 'FAIL'} ({v['scenario']}, seed {v['seed']})")


def write_json(v, path):
    with open(path, "w") as f:
        json.dump(v, f, indent=2, sort_keys=False)
        f.write("\n")


def set_bars(v, bars):
    """Set the bars (name -> bool) and `pass` of a built verdict; returns it."""
    v["bars"] = dict(bars)
    v["pass"] = all(v["bars"].values())
    return v
