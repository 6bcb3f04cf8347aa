#!/usr/bin/env python3
"""The alpha-beta model of README "Scaling": projected weak-scaling efficiency of the three
reductions (include/ewc/dist.h) for a fixed batch per rank, with nothing overlapped.

step time = compute + communication, compute = 6 n b / F (forward 2, backward 4 flops per
parameter and sample; b samples per rank, F the flop rate of one rank), communication by ring
algorithms (what Open MPI uses for large messages):
  exact      2L + 1 all-gathers:        (2L + 1)(p-1) alpha + (B s + 4n)(p-1)/p / beta
  fixed      reduce-scatter + all-gather + one small max-allreduce:
                                         2(p-1) alpha + 2 log2(p) alpha + 12n(p-1)/p / beta
  allreduce  ring allreduce:             2(p-1) alpha + 8n(p-1)/p / beta
efficiency = compute / step time. fixed also pays, per rank and step, ceil(b/m) micro-batch
conversions of the n-parameter gradient to int64 and their accumulation (memory-bound): c ns per
parameter and micro-batch, fitted to the 2-rank bench_reduce run at batch 4096 (README
"Scaling": fixed's extra step time over allreduce's, per parameter and micro-batch of a rank,
0.40 ns for both models since the conversion works on cache-sized blocks).
usage: scaling_model.py [--flops GF/s] [--per-rank b] [--micro-batch m]
                        [--link NAME=ALPHA_US,BETA_GBS ...]"""
import argparse
import math

MODELS = {  # name: (parameters n, layers L, bytes per sample s that exact all-gathers,
    #                  fixed's conversion ns per parameter and micro-batch)
    "784-400-400-10": (478_410, 3, 6_500, 0.40),
    "784-2000-2000-10": (5_592_010, 3, 32_000, 0.40),
}


def comm_seconds(mode, n, L, s, B, p, alpha, beta):
    if p == 1:
        return 0.0
    f = (p - 1) / p
    if mode == "exact":
        return (2 * L + 1) * (p - 1) * alpha + (B * s + 4 * n) * f / beta
    if mode == "fixed":
        return 2 * (p - 1) * alpha + 2 * math.log2(p) * alpha + 12 * n * f / beta
    return 2 * (p - 1) * alpha + 8 * n * f / beta


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flops", type=float, default=200.0, help="GFLOP/s of one rank (default 200)")
    ap.add_argument("--per-rank", type=int, default=256, help="samples per rank and step (256)")
    ap.add_argument("--link", action="append", default=[],
                    help="NAME=ALPHA_US,BETA_GBS (default: 10 GbE and 100 Gb InfiniBand)")
    ap.add_argument("--ranks", default="8,16,64")
    ap.add_argument("--micro-batch", type=int, default=96, help="--micro-batch m (default 96)")
    a = ap.parse_args()
    links = a.link or ["10GbE=25,1.15", "IB-EDR=1.5,11.5"]
    ranks = [int(x) for x in a.ranks.split(",")]
    print(f"weak scaling, {a.per_rank} samples per rank, {a.flops:g} GFLOP/s per rank, micro-batch "
          f"{a.micro_batch}, nothing overlapped: efficiency = plain compute / step time")
    print("| model | link (alpha, beta) | reduction | " + " | ".join(f"p = {p}" for p in ranks) + " |")
    print("|---|---|---|" + "---:|" * len(ranks))
    for name, (n, L, s, conv_ns) in MODELS.items():
        compute = 6.0 * n * a.per_rank / (a.flops * 1e9)
        for link in links:
            lname, vals = link.split("=")
            alpha_us, beta_gbs = (float(v) for v in vals.split(","))
            alpha, beta = alpha_us * 1e-6, beta_gbs * 1e9
            for mode in ("exact", "fixed", "allreduce"):
                conv = math.ceil(a.per_rank / a.micro_batch) * n * conv_ns * 1e-9
                work = compute + (conv if mode == "fixed" else 0.0)
                eff = [compute / (work + comm_seconds(mode, n, L, s, a.per_rank * p, p, alpha, beta))
                       for p in ranks]
                print(f"| {name} | {lname} ({alpha_us:g} us, {beta_gbs:g} GB/s) | {mode} | "
                      + " | ".join(f"{e:.2f}" for e in eff) + " |")


if __name__ == "__main__":
    main()
