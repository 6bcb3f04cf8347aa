#!/usr/bin/python3
"""Permuted-MNIST domain-incremental EWC in PyTorch, in van de Ven & Tolias' protocol: an
independent reference for the levels ewc-train reaches (optional; needs python3-torch, which
ewc-train never does). One run prints the final average test accuracy and the last row of the
accuracy matrix.

Protocol (their code's defaults for permMNIST): 32x32 zero-padded images (pixel/255), 10 tasks,
each a fixed pixel permutation; 1024-1000-1000-10 ReLU MLP with PyTorch's default initialisation;
one Adam (lr 1e-4, betas 0.9/0.999) for the whole sequence; 5000 iterations of batch 128 per
task; offline EWC with one Fisher per task over all 60000 training images, labels predicted by
the model (argmax); loss = cross-entropy + lambda * sum_t 0.5 * sum_i F_t,i (theta_i - theta*_t,i)^2,
kept as sum_t F_t and sum_t F_t theta*_t (the same gradient at any task count).

  tests/reference/permuted_domain_torch.py DATA_DIR [--lam 100] [--seed 1] [--iters 5000] ...
  tests/reference/permuted_domain_torch.py --self-test   (the Fisher trick against a per-sample loop)
"""
import argparse
import gzip
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(data_dir, split, pad):
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(f"{data_dir}/{prefix}-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    y = read_idx(f"{data_dir}/{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    if pad > 28:
        p = (pad - 28) // 2
        x = np.pad(x, ((0, 0), (p, pad - 28 - p), (p, pad - 28 - p)))
    return torch.from_numpy(x.reshape(len(x), -1)), torch.from_numpy(y)


class Mlp(torch.nn.Module):
    def __init__(self, n_in, hidden, init):
        super().__init__()
        sizes = [n_in] + hidden + [10]
        self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        if init == "he":  # ewc-train's: He-uniform weights, zero biases
            for layer in self.layers:
                bound = (6.0 / layer.in_features) ** 0.5
                torch.nn.init.uniform_(layer.weight, -bound, bound)
                torch.nn.init.zeros_(layer.bias)

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i + 1 < len(self.layers):
                x = F.relu(x)
        return x


def fisher_diag(model, x, labels_mode, chunk=1000):
    """Mean over the samples of the squared per-sample gradient of -log p(label|x). For a linear
    layer the per-sample weight gradient is delta_n a_n^T, so the sum of its squares over n is
    (delta^2)^T (a^2): exact, without a per-sample loop."""
    model.eval()
    fis = [torch.zeros_like(p) for p in model.parameters()]
    for s in range(0, len(x), chunk):
        h, acts, pre = x[s:s + chunk], [], []
        for i, layer in enumerate(model.layers):
            acts.append(h)
            z = layer(h)
            z.retain_grad()
            pre.append(z)
            h = F.relu(z) if i + 1 < len(model.layers) else z
        logp = F.log_softmax(h, dim=1)
        if labels_mode == "pred":
            lab = logp.argmax(1)
        else:
            lab = torch.multinomial(logp.detach().exp(), 1).squeeze(1)
        (-logp.gather(1, lab[:, None]).sum()).backward()
        for k, (a, z) in enumerate(zip(acts, pre)):
            d2 = z.grad * z.grad
            a = a.detach()
            fis[2 * k] += d2.t() @ (a * a)
            fis[2 * k + 1] += d2.sum(0)
        model.zero_grad()
    model.train()
    return [f / len(x) for f in fis]


def self_test():
    """fisher_diag against a per-sample loop on a small random network; exits non-zero on a mismatch."""
    torch.manual_seed(0)
    net, x = Mlp(20, [7, 5], "torch"), torch.rand(13, 20)
    fast = fisher_diag(net, x, "pred", chunk=5)
    slow = [torch.zeros_like(p) for p in net.parameters()]
    for n in range(len(x)):
        logp = F.log_softmax(net(x[n:n + 1]), dim=1)
        net.zero_grad()
        (-logp[0, logp.argmax()]).backward()
        for acc, p in zip(slow, net.parameters()):
            acc += p.grad ** 2 / len(x)
    err = max(float(((a - b).abs() / (b.abs() + 1e-6)).max()) for a, b in zip(fast, slow))
    print(f"fisher_diag vs per-sample loop: max relative difference {err:.2e}")
    return 0 if err < 1e-4 else 1


def main():
    if sys.argv[1:] == ["--self-test"]:
        sys.exit(self_test())
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--lam", type=float, default=100.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--iters", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--pad", type=int, default=32)
    ap.add_argument("--init", choices=["torch", "he"], default="torch")
    ap.add_argument("--fisher", choices=["pred", "sampled"], default="pred")
    ap.add_argument("--adam-reset", action="store_true", help="a new Adam at every task")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(1)
    rng = np.random.default_rng(a.seed)
    xtr, ytr = load(a.data, "train", a.pad)
    xte, yte = load(a.data, "test", a.pad)
    n_in = xtr.shape[1]
    perms = [torch.from_numpy(rng.permutation(n_in)) for _ in range(a.tasks)]
    model = Mlp(n_in, [1000, 1000], a.init)
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=a.lr, betas=(0.9, 0.999))
    fsum, fmsum = [], []
    t0 = time.time()
    for t in range(a.tasks):
        if a.adam_reset and t > 0:
            opt = torch.optim.Adam(params, lr=a.lr, betas=(0.9, 0.999))
        x = xtr[:, perms[t]]
        order = torch.randperm(len(x))
        pos = 0
        for _ in range(a.iters):
            if pos + a.batch > len(x):
                order, pos = torch.randperm(len(x)), 0
            idx = order[pos:pos + a.batch]
            pos += a.batch
            loss = F.cross_entropy(model(x[idx]), ytr[idx])
            if fsum:  # sum_t F_t (p - m_t)^2 = A p^2 - 2 B p + const: the same gradient
                pen = sum(((fa * p - 2 * fb) * p).sum() for fa, fb, p in zip(fsum, fmsum, params))
                loss = loss + a.lam * 0.5 * pen
            opt.zero_grad()
            loss.backward()
            opt.step()
        if a.lam > 0:  # offline EWC: A = sum_t F_t, B = sum_t F_t theta*_t
            fis = fisher_diag(model, x, a.fisher)
            if not fsum:
                fsum, fmsum = [torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params]
            for fa, fb, f, p in zip(fsum, fmsum, fis, params):
                fa += f
                fb += f * p.detach()
        print(f"task {t + 1} done, {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    model.eval()
    with torch.no_grad():
        accs = [(model(xte[:, perms[t]]).argmax(1) == yte).float().mean().item()
                for t in range(a.tasks)]
    print(f"final average test accuracy {np.mean(accs):.4f}; last row " +
          " ".join(f"{v:.3f}" for v in accs))


if __name__ == "__main__":
    main()
