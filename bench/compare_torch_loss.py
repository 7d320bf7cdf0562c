#!/usr/bin/python3
"""Side-by-side timing of ddpm's simple loss with its gradient against PyTorch's F.mse_loss(out, target).backward().

Needs Debian's python3-torch, which installs for Debian's own interpreter: run it as
    /usr/bin/python3 bench/compare_torch_loss.py --bench build/loss/bench/bench_loss [--threads 1]
(build bench_loss with -DDDPM_OPENMP=ON for --threads 2). It times, in one run, PyTorch's
    out.grad = None; F.mse_loss(out, target).backward()          (a fresh gradient tensor each call)
    out.grad.zero_(); F.mse_loss(out, target).backward()         (accumulating into a kept gradient)
taking the faster of the two (PyTorch at its best), and ddpm's BM_SimpleLoss_Gradient (which also applies
per-sample weights and returns the per-sample losses), and prints a Markdown table with the ratios and
each side's fraction of the triad measured by bench_loss on the same shape (3 arrays of n floats).

As bench/compare_torch.py does, the script re-executes itself with glibc's MALLOC_MMAP_THRESHOLD_ and
MALLOC_TRIM_THRESHOLD_ raised (else every fresh PyTorch result page-faults in; --default-malloc keeps the
defaults) and sets OPENBLAS_NUM_THREADS=1 before importing torch.
"""
import argparse
import json
import os
import subprocess
import sys
import time

SHAPES = [(8, 3, 32, 32), (64, 3, 32, 32), (16, 3, 64, 64), (64, 3, 256, 256)]
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", default="build/loss/bench/bench_loss", help="path of the bench_loss binary")
    p.add_argument("--threads", type=int, default=1, help="threads for both sides (default 1)")
    p.add_argument("--min-time", type=float, default=0.5, help="seconds per measurement")
    p.add_argument("--default-malloc", action="store_true", help="keep glibc's malloc thresholds for PyTorch")
    return p.parse_args()


def time_torch(fn, min_time):
    """Best per-call wall time over repeated batches of calls."""
    fn()
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        if time.perf_counter() - start > 0.05:
            break
        calls *= 4
    best = float("inf")
    deadline = time.perf_counter() + min_time
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def torch_times(threads, min_time):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    result = {}
    for shape in SHAPES:
        out = torch.randn(shape, requires_grad=True)
        target = torch.randn(shape)

        def fresh():
            out.grad = None
            F.mse_loss(out, target).backward()

        def kept():
            out.grad.zero_()
            F.mse_loss(out, target).backward()

        a = time_torch(fresh, min_time)
        b = time_torch(kept, min_time)
        result[shape] = (min(a, b), "fresh grad" if a <= b else "kept grad")
    return result, torch.__version__


def ddpm_times(bench, threads, min_time):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [bench, "--benchmark_filter=BM_(SimpleLoss_Gradient|Triad)/", "--benchmark_format=json",
           f"--benchmark_min_time={min_time}"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    result = {}
    for b in json.loads(out)["benchmarks"]:
        name, *args = b["name"].split("/")
        shape = tuple(int(a.split(":")[1]) for a in args[:4])
        seconds = b["real_time"] * {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
        result.setdefault(shape, {})[name] = seconds
    return result


def main():
    args = parse_args()
    if not args.default_malloc and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:],
                  dict(os.environ, **MALLOC_ENV))
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    ours = ddpm_times(args.bench, args.threads, args.min_time)
    theirs, version = torch_times(args.threads, args.min_time)
    print(f"PyTorch {version}, {args.threads} thread(s); wall time per call; ratio = PyTorch / ddpm; "
          "triad = bench_loss's BM_Triad on the same shape (wall time), its time / the kernel's\n")
    print("| shape | PyTorch mse_loss + backward | ddpm simple_loss_and_gradient | ratio | ddpm of triad | PyTorch of triad |")
    print("|---|---|---|---|---|---|")
    for shape in SHAPES:
        tt, variant = theirs[shape]
        ot = ours[shape]["BM_SimpleLoss_Gradient"]
        tri = ours[shape]["BM_Triad"]
        print(f"| {shape} | {tt * 1e6:.1f} us ({variant}) | {ot * 1e6:.1f} us | {tt / ot:.2f}x "
              f"| {tri / ot:.2f} | {tri / tt:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
