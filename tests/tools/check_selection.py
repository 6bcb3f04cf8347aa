#!/usr/bin/python3
# Fake finished sweeps with validation data whose validation and test figures disagree, and
# independent checks of ewc-aggregate --select and ewc-plot tasks on them (tests/test_launch.sh).
"""usage:
  check_selection.py fake   LAUNCH_DIR SWEEP ROOT     write finished fake runs for every point
  check_selection.py differ LAUNCH_DIR SWEEP          validation-best != test-best for every
                                                      method with more than one grid point
  check_selection.py check  LAUNCH_DIR SWEEP SELECTION_CSV
                                                      the CSV holds, per method, the best mean
                                                      validation accuracy and its test figures
  check_selection.py chosen LAUNCH_DIR SWEEP CHOSEN_INI
                                                      chosen.ini holds those choices, seeds as grid
  check_selection.py plot   LAUNCH_DIR SWEEP          ewc-plot tasks draws those choices
  check_selection.py strip  RUN_DIR                   remove the run's validation data
Exit status 0 when the check holds; an AssertionError (exit 1) says what is wrong otherwise.
"""
import csv
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import statistics
import sys
import urllib.parse

TASKS = 3
VARIANT_KEYS = ("method", "dropout-input", "dropout")


def load(launch, tool):
    loader = importlib.machinery.SourceFileLoader(tool.replace("-", "_"), os.path.join(launch, tool))
    mod = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(mod)
    return mod


def points(launch, sweep_path):
    sw = load(launch, "ewc-sweep")
    s = sw.Sweep(sweep_path)
    root = s.settings.get("root") or os.path.join("runs", s.name)
    return [(p, os.path.join(root, sw.point_name(p))) for p in s.points()]


def unit(text):
    """A number in [0, 1) from a string (stable across Python runs, unlike hash())."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 2 ** 32


def setting(p):
    return ",".join(f"{k}={v}" for k, v in p.items() if k != "seed")


def matrix(final, seed_offset):
    """A TASKS x TASKS accuracy matrix whose last row averages to final + seed_offset."""
    f = final + seed_offset
    r = [[0.1] * TASKS for _ in range(TASKS)]
    for t in range(TASKS):
        for j in range(t + 1):
            r[t][j] = f + 0.03 + 0.01 * j - 0.02 * t
    r[-1] = [f - 0.02, f, f + 0.02][:TASKS]
    return r


def metrics(r, prefix=""):
    k = len(r)
    out = {f"{prefix}average_accuracy": statistics.fmean(r[-1]),
           f"{prefix}average_accuracy_seen": statistics.fmean(r[-1]),
           f"{prefix}average_accuracy_after_task": [statistics.fmean(r[t][:t + 1]) for t in range(k)]}
    if not prefix:
        out["backward_transfer"] = statistics.fmean(r[-1][j] - r[j][j] for j in range(k - 1))
        out["forgetting"] = statistics.fmean(max(r[t][j] for t in range(j, k - 1)) - r[-1][j]
                                             for j in range(k - 1))
    return out


def write_matrix(path, r):
    with open(path, "w", encoding="utf-8") as f:
        f.write("after_task,task,accuracy\n")
        for t, row in enumerate(r):
            for j, a in enumerate(row):
                f.write(f"{t},{j},{a:.4f}\n")


def fake(launch, sweep_path, root):
    for p, default_dir in points(launch, sweep_path):
        d = os.path.join(root, os.path.basename(default_dir))
        os.makedirs(d, exist_ok=True)
        val = 0.6 + 0.3 * unit(setting(p))   # each grid point its own validation level ...
        test = 1.45 - val                     # ... and test in the opposite order
        off = 0.004 * (int(p.get("seed", 1)) - 2)
        rt, rv = matrix(test, off), matrix(val, -off)
        config = {"data_dir": "/nowhere/mnist", "train_samples": 1000, "test_samples": 200,
                  "hidden": [16], "dropout_input": float(p.get("dropout-input", 0)),
                  "dropout": float(p.get("dropout", 0)), "seed": int(p.get("seed", 1)),
                  "tasks": TASKS, "method": p["method"], "lambda": float(p.get("lambda", 100)),
                  "gamma": float(p.get("gamma", 1)), "validation": 6000, "threads": 1,
                  "out_dir": d, "resume": True, "quiet": True, "fisher_overlap": "", "help": False}
        s = {"config": config, "ranks": 1, "tasks_done": TASKS, "accuracy_matrix": rt,
             "validation_samples": 6000, "validation_accuracy_matrix": rv}
        s.update(metrics(rt))
        s.update(metrics(rv, "validation_"))
        with open(os.path.join(d, "summary.json"), "w", encoding="utf-8") as f:
            json.dump(s, f)
        write_matrix(os.path.join(d, "accuracy.csv"), rt)
        write_matrix(os.path.join(d, "validation_accuracy.csv"), rv)


def runs_by_setting(launch, sweep_path):
    """{variant: {setting: [summary of each seed]}} read back from the run directories."""
    out = {}
    for _, d in points(launch, sweep_path):
        params = dict(urllib.parse.unquote(kv).split("=", 1) for kv in os.path.basename(d).split(","))
        with open(os.path.join(d, "summary.json"), encoding="utf-8") as f:
            s = json.load(f)
        variant = tuple(params.get(k) for k in VARIANT_KEYS)
        key = tuple(sorted((k, v) for k, v in params.items() if k != "seed"))
        out.setdefault(variant, {}).setdefault(key, []).append(s)
    return out


def best(settings, field):
    return max(settings, key=lambda k: statistics.fmean(s[field] for s in settings[k]))


def differ(launch, sweep_path):
    multi = 0
    for variant, settings in runs_by_setting(launch, sweep_path).items():
        if len(settings) > 1:
            multi += 1
            assert best(settings, "validation_average_accuracy") != best(settings, "average_accuracy"), variant
    assert multi >= 3, multi


def check(launch, sweep_path, selection_csv):
    rows = list(csv.DictReader(open(selection_csv, encoding="utf-8")))
    data = runs_by_setting(launch, sweep_path)
    assert len(rows) == len(data), (len(rows), len(data))
    for row in rows:
        variant = tuple(row.get(k) or None for k in VARIANT_KEYS)
        settings = data[variant]
        want = dict(best(settings, "validation_average_accuracy"))
        got = {k: v for k, v in row.items() if v and k not in ("variant", "runs", "candidates", "chosen_on")
               and not k.endswith(("_mean", "_std"))}
        assert got == want, (got, want)
        assert row["chosen_on"] == "validation" and int(row["candidates"]) == len(settings), row
        runs = settings[tuple(sorted(want.items()))]
        assert int(row["runs"]) == len(runs), row
        for field, col in (("validation_average_accuracy", "validation_average_accuracy"),
                           ("average_accuracy", "test_average_accuracy"),
                           ("backward_transfer", "test_backward_transfer"),
                           ("forgetting", "test_forgetting")):
            v = [s[field] for s in runs]
            assert abs(float(row[col + "_mean"]) - statistics.fmean(v)) < 1e-6, (col, row, v)
            assert abs(float(row[col + "_std"]) - statistics.stdev(v)) < 1e-6, (col, row, v)


def chosen(launch, sweep_path, chosen_ini):
    """chosen.ini is a sweep file with one [grid] per method: its validation choice and the seeds."""
    s = load(launch, "ewc-sweep").Sweep(chosen_ini)
    data = runs_by_setting(launch, sweep_path)
    assert len(s.grids) == len(data), s.grids
    for g in s.grids:
        variant = tuple(g.get(k, [None])[0] for k in VARIANT_KEYS)
        want = dict(best(data[variant], "validation_average_accuracy"))
        assert {k: v[0] for k, v in g.items() if k != "seed"} == want, (g, want)
        assert all(len(v) == 1 for k, v in g.items() if k != "seed") and g["seed"] == ["1", "2", "3"], g


def plot(launch, sweep_path):
    mod = load(launch, "ewc-plot")
    figs = []
    mod.save = lambda fig, path: figs.append(fig)
    assert mod.main(["tasks", sweep_path]) == 0 and len(figs) == 1
    ax = figs[0].axes[0]
    assert "chosen on validation" in ax.get_title() and "Fig. 2B" in ax.get_title(), ax.get_title()
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    data = runs_by_setting(launch, sweep_path)
    assert len(lines) == len(data) + 1, list(lines)   # one line per method + the single-task level
    for variant, settings in data.items():
        chosen = dict(best(settings, "validation_average_accuracy"))
        runs = settings[tuple(sorted(chosen.items()))]
        name = variant[0] + (" + dropout" if variant[1] else "")
        matches = [ln for lab, ln in lines.items() if lab == name or lab.startswith(name + " (")]
        assert len(matches) == 1, (name, list(lines))
        if "lambda" in chosen:
            assert f"λ={chosen['lambda']}" in matches[0].get_label(), matches[0].get_label()
        mean = [statistics.fmean(s["average_accuracy_after_task"][t] for s in runs) for t in range(TASKS)]
        assert all(abs(a - b) < 1e-9 for a, b in zip(matches[0].get_ydata(), mean)), (name, mean)
    sgd = data[("sgd", None, None)]
    diag = [s["accuracy_matrix"][t][t] for runs in sgd.values() for s in runs for t in range(TASKS)]
    level = [ln for lab, ln in lines.items() if lab.startswith("single-task level")]
    assert len(level) == 1 and abs(level[0].get_ydata()[0] - statistics.fmean(diag)) < 1e-9, level


def strip(run_dir):
    path = os.path.join(run_dir, "summary.json")
    s = json.load(open(path, encoding="utf-8"))
    for k in [k for k in s if k.startswith("validation")]:
        del s[k]
    json.dump(s, open(path, "w", encoding="utf-8"))
    os.remove(os.path.join(run_dir, "validation_accuracy.csv"))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"fake": fake, "differ": differ, "check": check, "chosen": chosen, "plot": plot,
     "strip": strip}[cmd](*args)
