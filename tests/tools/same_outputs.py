#!/usr/bin/python3
# Check that two run directories hold the same results: checkpoint datasets bit for bit,
# accuracy.csv, validation_accuracy.csv and curve.csv byte for byte, and summary.json equal
# except timing and execution fields (which legitimately differ between runs). Exit 0 if all agree.
import json
import subprocess
import sys
from pathlib import Path

EXECUTION = {"out_dir", "threads", "resume", "quiet", "eval_every", "checkpoint_every", "blas_core"}
TIMING = {"wall_seconds", "train_seconds", "train_samples_per_second", "ranks"}


def main():
    a, b = Path(sys.argv[1]), Path(sys.argv[2])
    bad = []
    for name in ["accuracy.csv", "validation_accuracy.csv", "curve.csv"]:
        if (a / name).exists() or (b / name).exists():
            if not (a / name).exists() or not (b / name).exists():
                bad.append(f"{name} missing on one side")
            elif (a / name).read_bytes() != (b / name).read_bytes():
                bad.append(f"{name} differs")
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    for s in (sa, sb):
        for k in TIMING:
            s.pop(k, None)
        for k in EXECUTION:
            s["config"].pop(k, None)
    if sa != sb:
        bad.append("summary.json differs: " + ", ".join(k for k in sa if sa.get(k) != sb.get(k)))
    same = subprocess.run([str(Path(__file__).with_name("h5same.py")), str(a / "checkpoint.h5"),
                           str(b / "checkpoint.h5")], capture_output=True, text=True)
    if same.returncode != 0:
        bad.append("checkpoint.h5: " + " ".join(same.stdout.split("\n")[:3]))
    for line in bad:
        print(line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
