#!/usr/bin/python3
"""Side-by-side timing of ddpm::nn::UNet2D and the same network in PyTorch (DDPM-CIFAR10 configuration).

Needs Debian's python3-torch, which installs for Debian's own interpreter: run it as
    /usr/bin/python3 bench/compare_torch_unet.py --bench build/release/bench/bench_unet [--rounds 3]
PyTorch runs the UNet2DModel of tests/reference/make_unet_fixture.py (written from scratch with diffusers'
parameter names and arithmetic; 35,746,307 parameters) under torch.no_grad, in eval mode, with the same
thread count as the C++ side and OPENBLAS_NUM_THREADS=1 (OpenBLAS's own pool otherwise spins against
PyTorch's), in both channels-first and channels-last memory formats, and keeps the better one: PyTorch at its
best. PyTorch's matrix products (attention, linear layers) go through libblas.so.3: with Debian's reference
libblas3 they crawl, so install libopenblas0-pthread (apt) first; the script reports the BLAS PyTorch loaded
and warns when it is the reference one. Each configuration (batch 1 and 8, 1 and 2 threads) is timed in a fresh process, alternating C++ and
PyTorch over --rounds rounds, and the best time of each is kept. Prints a Markdown table with GFLOP/s and
the ratio (PyTorch time / ddpm time: above 1 means ddpm is faster).
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = [(1, 1), (1, 2), (8, 1), (8, 2)]  # (batch, threads)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", default="build/release/bench/bench_unet", help="path of the bench_unet binary")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per configuration (best kept)")
    p.add_argument("--min-time", type=float, default=3.0, help="seconds per measurement")
    p.add_argument("--torch-only", action="store_true", help="time PyTorch only (prints JSON)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args()


def torch_time(batch, threads, min_time):
    """Best seconds per forward pass of PyTorch, in its better memory format. Run in a fresh process."""
    import torch  # imported after the thread environment is set

    sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
    from make_unet_fixture import CIFAR10_CONFIG, UNet2DModel

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = UNet2DModel(CIFAR10_CONFIG).eval()
    x = torch.randn(batch, 3, 32, 32)
    t = torch.full((batch,), 500, dtype=torch.int64)
    results = {}
    with torch.no_grad():
        for fmt in ("channels_first", "channels_last"):
            if fmt == "channels_last":
                model = model.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
            for _ in range(2):
                model(x, t)
            best = float("inf")
            deadline = time.perf_counter() + min_time
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                model(x, t)
                best = min(best, time.perf_counter() - start)
            results[fmt] = best
    with open("/proc/self/maps") as maps:
        blas = sorted({line.split()[-1] for line in maps if "libblas" in line or "libopenblas" in line})
    return results, blas


def run_torch(batch, threads, min_time):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--torch-only", "--batch", str(batch),
                          "--threads", str(threads), "--min-time", str(min_time)],
                         env=env, check=True, capture_output=True, text=True).stdout
    times, blas = json.loads(out)
    if not any("openblas" in path or "mkl" in path for path in blas):
        print(f"warning: PyTorch loaded {blas or 'no BLAS'}; with the reference BLAS it is not at its best "
              "(apt-get install libopenblas0-pthread)", file=sys.stderr)
    return times, blas


def run_ddpm(bench, batch, threads, min_time):
    """Best seconds of a single forward pass of bench_unet, over about min_time seconds of passes (as PyTorch's)."""
    name = f"BM_UNet2D_Forward/batch:{batch}/threads:{threads}/"
    passes = max(3, int(min_time / (0.15 * batch)))
    out = subprocess.run([bench, f"--benchmark_filter={name}", "--benchmark_min_time=0",
                          f"--benchmark_repetitions={passes}", "--benchmark_format=json"],
                         check=True, capture_output=True, text=True).stdout
    data = json.loads(out)
    times = [b["real_time"] for b in data["benchmarks"] if b.get("run_type") == "iteration"]
    gflop = [b["GFLOP/image"] for b in data["benchmarks"] if "GFLOP/image" in b][0]
    unit = {"ms": 1e-3, "us": 1e-6, "ns": 1e-9, "s": 1.0}[data["benchmarks"][0]["time_unit"]]
    return min(times) * unit, gflop


def main():
    args = parse_args()
    if args.torch_only:
        print(json.dumps(torch_time(args.batch, args.threads, args.min_time)))
        return
    rows = []
    for batch, threads in CONFIGS:
        best_ddpm, best_torch, formats, gflop = float("inf"), float("inf"), {}, 12.44
        for _ in range(args.rounds):
            t_ddpm, gflop = run_ddpm(args.bench, batch, threads, args.min_time)
            best_ddpm = min(best_ddpm, t_ddpm)
            times, blas = run_torch(batch, threads, args.min_time)
            for fmt, t in times.items():
                formats[fmt] = min(formats.get(fmt, float("inf")), t)
        fmt, best_torch = min(formats.items(), key=lambda kv: kv[1])
        rows.append((batch, threads, best_ddpm, best_torch, fmt, gflop, formats))
    print("| batch | threads | ddpm (s) | ddpm GFLOP/s | PyTorch (s) | PyTorch GFLOP/s | PyTorch format | "
          "PyTorch / ddpm |")
    print("|---:|---:|---:|---:|---:|---:|---|---:|")
    for batch, threads, d, t, fmt, gflop, _ in rows:
        print(f"| {batch} | {threads} | {d:.3f} | {gflop * batch / d:.1f} | {t:.3f} | {gflop * batch / t:.1f} | "
              f"{fmt.replace('_', '-')} | {t / d:.2f} |")
    print()
    print("PyTorch's BLAS: " + ", ".join(blas))
    for batch, threads, _, _, _, _, formats in rows:
        print(f"batch {batch}, {threads} thread(s): PyTorch " +
              ", ".join(f"{k.replace('_', '-')} {v:.3f} s" for k, v in formats.items()))


if __name__ == "__main__":
    main()
