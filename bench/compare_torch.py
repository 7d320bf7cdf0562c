#!/usr/bin/python3
"""Side-by-side timing of ddpm's q_sample against PyTorch on the same shapes and thread count.

Needs Debian's python3-torch, which installs for Debian's own interpreter: run it as
    /usr/bin/python3 bench/compare_torch.py --bench build/release/bench/bench_core [--threads 1]
It times, in one run, PyTorch's
    sqrt_ab * x0 + sqrt_1mab * eps                         (noise given)
    sqrt_ab * x0 + sqrt_1mab * torch.randn_like(x0)        (drawing the noise)
and ddpm's BM_QSample_GivenNoise / BM_QSample_DrawNoise, and prints a Markdown table with the ratios.

PyTorch is measured at its best: with glibc's default malloc thresholds every PyTorch op page-faults its fresh
result tensor in, so the script re-executes itself with MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_
raised (as bench/compare_torch_samplers.py does); --default-malloc keeps glibc's defaults.
"""
import argparse
import json
import os
import subprocess
import sys
import time

SHAPES = [(1, 3, 32, 32), (16, 3, 64, 64), (4, 4, 128, 128), (64, 3, 256, 256)]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", default="build/release/bench/bench_core", help="path of the bench_core binary")
    p.add_argument("--threads", type=int, default=1, help="threads for both sides (default 1)")
    p.add_argument("--min-time", type=float, default=0.5, help="seconds per measurement")
    p.add_argument("--default-malloc", action="store_true", help="keep glibc's malloc thresholds for PyTorch")
    return p.parse_args()


def time_torch(fn, min_time):
    """Best per-call time over repeated batches of calls (PyTorch at its best)."""
    fn()
    calls, best = 1, float("inf")
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed > 0.05:
            break
        calls *= 4
    deadline = time.perf_counter() + min_time
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def torch_times(threads, min_time):
    import torch  # imported after the thread environment is set

    torch.set_num_threads(threads)
    sqrt_ab, sqrt_1mab = 0.2789, 0.9603
    result = {}
    with torch.no_grad():
        for shape in SHAPES:
            x0 = torch.randn(shape)
            eps = torch.randn(shape)
            given = time_torch(lambda: sqrt_ab * x0 + sqrt_1mab * eps, min_time)
            drawn = time_torch(lambda: sqrt_ab * x0 + sqrt_1mab * torch.randn_like(x0), min_time)
            result[shape] = (given, drawn)
    return result, torch.__version__


def ddpm_times(bench, threads, min_time):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [bench, "--benchmark_filter=BM_QSample_(GivenNoise|DrawNoise)/", "--benchmark_format=json",
           f"--benchmark_min_time={min_time}"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    result = {}
    for b in json.loads(out)["benchmarks"]:
        name, *args = b["name"].split("/")
        shape = tuple(int(a.split(":")[1]) for a in args[:4])
        seconds = b["real_time"] * {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
        result.setdefault(shape, {})[name] = seconds
    return result


MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}


def main():
    args = parse_args()
    if not args.default_malloc and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:],
                  dict(os.environ, **MALLOC_ENV))
    # PyTorch at its best: OpenBLAS's own pool must not spin beside torch's threads (shared/PERF-NOTES.md).
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    ours = ddpm_times(args.bench, args.threads, args.min_time)
    theirs, version = torch_times(args.threads, args.min_time)
    print(f"PyTorch {version}, {args.threads} thread(s); times per call, ratio = PyTorch / ddpm\n")
    print("| shape | torch given | ddpm given | ratio | torch drawing | ddpm drawing | ratio |")
    print("|---|---|---|---|---|---|---|")
    for shape in SHAPES:
        tg, td = theirs[shape]
        og = ours[shape]["BM_QSample_GivenNoise"]
        od = ours[shape]["BM_QSample_DrawNoise"]
        print(f"| {shape} | {tg * 1e6:.1f} us | {og * 1e6:.1f} us | {tg / og:.1f}x "
              f"| {td * 1e6:.1f} us | {od * 1e6:.1f} us | {td / od:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
