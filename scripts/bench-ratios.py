#!/usr/bin/env python3
"""Prints criterion's latest mean estimates for the parse groups and sessionflow's speed-up
over each baseline (ratios from one run, since these machines are shared and noisy)."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
for group in ["parse_raw_session", "parse_webhook_envelope", "parse_batch_mixed"]:
    means = {}
    for fn in ["sessionflow", "sessionflow_sse2", "sessionflow_avx2", "serde_json", "sonic_rs",
               "simd_json_tape_only"]:
        est = root / group / fn / "new" / "estimates.json"
        bench = root / group / fn / "new" / "benchmark.json"
        if est.exists():
            mean = json.loads(est.read_text())["mean"]["point_estimate"]  # ns
            nbytes = json.loads(bench.read_text()).get("throughput", {}).get("Bytes", 0)
            means[fn] = (mean, nbytes)
    if "sessionflow" not in means:
        continue
    sf = means["sessionflow"][0]
    parts = []
    for fn, (mean, nbytes) in means.items():
        mbps = nbytes / mean * 1e3 if nbytes else 0
        parts.append(f"{fn} {mean/1e3:.1f} us ({mbps:.0f} MB/s)")
    ratios = ", ".join(f"{other}: {means[other][0]/sf:.2f}x"
                       for other in ("sessionflow_sse2", "sessionflow_avx2", "serde_json", "sonic_rs")
                       if other in means)
    print(f"{group}: " + "; ".join(parts) + f" -> sessionflow speed-up {ratios}")
