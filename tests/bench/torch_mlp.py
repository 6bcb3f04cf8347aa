# Baseline for the ewc-train benchmark: PyTorch-CPU MLP training throughput (same model/optimizer) to compare against.
"""Time plain-SGD training steps of a float32 MLP 784-h1-...-10 (ReLU, softmax
cross-entropy, mean) in PyTorch on the CPU.

Usage:
  python3 tests/bench/torch_mlp.py [--hidden 400,400] [--batch 100]
          [--threads 1] [--steps N] [--warmup N] [--repeats 3] [--json]

Only the training step is timed (zero_grad, forward, loss, backward,
optimizer.step); inputs in [0,1) and labels are pre-generated. The
measurement is repeated --repeats times and the best run is reported.

For a fair comparison with single-threaded BLAS set
OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 (the --threads value is exported to
both if they are not already set, before torch is imported).

Torch comes from Debian's python3-torch, which lives in /usr/bin/python3's
dist-packages; if the python3 running this script cannot import torch (e.g. a
pyenv interpreter first on PATH), the script re-executes itself with
/usr/bin/python3.
"""

import argparse
import json
import os
import sys
import time

SYSTEM_PYTHON = "/usr/bin/python3"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", default="400,400",
                   help="comma-separated hidden layer widths (default 400,400)")
    p.add_argument("--batch", type=int, default=100, help="mini-batch size")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (default 1)")
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps per repeat (default: ~1e5 samples, 20..500 steps)")
    p.add_argument("--warmup", type=int, default=10, help="untimed warm-up steps")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed repeats; the best is reported (default 3)")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true",
                   help="print a JSON object instead of the text line")
    a = p.parse_args(argv)
    try:
        a.hidden_list = [int(h) for h in a.hidden.split(",") if h.strip()]
    except ValueError:
        p.error("--hidden must be comma-separated integers, e.g. 400,400")
    if not a.hidden_list or min(a.hidden_list) <= 0:
        p.error("--hidden needs at least one positive width")
    if a.batch <= 0 or a.threads <= 0 or a.repeats <= 0 or a.warmup < 0:
        p.error("--batch/--threads/--repeats must be > 0, --warmup >= 0")
    if a.steps is None:
        a.steps = max(20, min(500, 100000 // a.batch))
    if a.steps <= 0:
        p.error("--steps must be > 0")
    return a


def import_torch():
    try:
        import torch  # noqa: F401
        return torch
    except ImportError:
        exe = os.path.realpath(sys.executable)
        if os.path.exists(SYSTEM_PYTHON) and exe != os.path.realpath(SYSTEM_PYTHON) \
                and not os.environ.get("TORCH_MLP_REEXEC"):
            os.environ["TORCH_MLP_REEXEC"] = "1"
            os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON] + sys.argv)
        sys.stderr.write("torch_mlp.py: cannot import torch; install Debian's "
                         "python3-torch (apt-get install python3-torch)\n")
        sys.exit(2)


def main(argv):
    a = parse_args(argv)
    # Must be set before torch (and its BLAS/OpenMP runtimes) are loaded.
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(a.threads))
    torch = import_torch()
    import torch.nn as nn

    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set (only allowed once, before any parallel work)
    torch.manual_seed(a.seed)

    n_in, n_out = 784, 10
    layers = []
    prev = n_in
    for h in a.hidden_list:
        layers += [nn.Linear(prev, h), nn.ReLU()]
        prev = h
    layers.append(nn.Linear(prev, n_out))
    model = nn.Sequential(*layers).float()
    model.train()
    loss_fn = nn.CrossEntropyLoss(reduction="mean")
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.0)

    # Pre-generated pool of distinct batches (cycled) so data loading is not timed.
    n_batches = max(1, min(a.warmup + a.steps, max(4, 20000 // a.batch)))
    n_pool = n_batches * a.batch
    x_pool = torch.rand(n_pool, n_in, dtype=torch.float32)
    y_pool = torch.randint(0, n_out, (n_pool,), dtype=torch.int64)
    xs = [x_pool[i * a.batch:(i + 1) * a.batch] for i in range(n_batches)]
    ys = [y_pool[i * a.batch:(i + 1) * a.batch] for i in range(n_batches)]

    def step(i):
        x, y = xs[i % n_batches], ys[i % n_batches]
        opt.zero_grad(set_to_none=False)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for i in range(a.warmup):
        step(i)

    times = []
    loss = None
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        for i in range(a.steps):
            loss = step(i)
        times.append(time.perf_counter() - t0)
    final_loss = float(loss.detach())

    best = min(times)
    step_ms = best / a.steps * 1e3
    sps = a.steps * a.batch / best
    hidden = ",".join(str(h) for h in a.hidden_list)
    if a.json:
        print(json.dumps({
            "impl": "torch",
            "torch_version": torch.__version__,
            "hidden": a.hidden_list,
            "batch": a.batch,
            "threads": a.threads,
            "steps": a.steps,
            "warmup": a.warmup,
            "repeats": a.repeats,
            "samples_per_s": sps,
            "step_ms": step_ms,
            "all_step_ms": [t / a.steps * 1e3 for t in times],
            "final_loss": final_loss,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        }))
    else:
        print("torch hidden=%s batch=%d threads=%d samples_per_s=%.1f step_ms=%.4f"
              % (hidden, a.batch, a.threads, sps, step_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
