#!/usr/bin/python3
"""Side-by-side timing of ddpm's optimiser steps against PyTorch's on the DDPM-CIFAR10 UNet's parameters.

Needs Debian's python3-torch, which installs for Debian's own interpreter: run it as
    /usr/bin/python3 bench/compare_torch_optim.py --bench build/optim/bench/bench_optim [--threads 1]
    /usr/bin/python3 bench/compare_torch_optim.py --bench build/optim-omp/bench/bench_optim --threads 2
(for 2 threads, a bench_optim built with -DDDPM_OPENMP=ON).

Both sides work on 328 separate float32 tensors with the UNet's sizes (35,746,307 parameters; the sizes are
read from `bench_optim --print-sizes`). The PyTorch side times, each as the best mean over batches of calls:
    torch.optim.AdamW(params).step()          (defaults; foreach=False and foreach=True, the faster counts)
    torch.optim.Adam(params, weight_decay=1e-2).step()                      (the same)
    torch.optim.SGD(params, lr=1e-3, momentum=0.9).step()                   (the same)
    torch.nn.utils.clip_grad_norm_(params, max_norm just below the norm)
    diffusers' EMAModel.step update, s.sub_((1 - d) * (s - p)) per tensor, and its foreach form (the faster)
with the optimiser state created by a first step outside the timing, and the ddpm benchmarks BM_AdamW_Step,
BM_Adam_Step, BM_SGD_Step, BM_ClipGradNorm and BM_EMA_Step (best of --repetitions), and prints a Markdown
table: both times, the ratio PyTorch / ddpm, and ddpm's triad_fraction and stream_fraction from the same run.

PyTorch is measured at its best: the script re-executes itself with glibc's MALLOC_MMAP_THRESHOLD_ and
MALLOC_TRIM_THRESHOLD_ raised (otherwise every fresh temporary page-faults in; --default-malloc keeps the
defaults), OPENBLAS_NUM_THREADS=1, and torch.set_num_threads(--threads).

Clock: with one thread both sides are timed in CPU time of the process (time.process_time, Google Benchmark's
cpu_time), so that a machine shared with other jobs slows neither side; with more threads both sides in
wall-clock time (Google Benchmark's real_time), which needs a quiet machine.
"""
import argparse
import json
import os
import subprocess
import sys
import time

BENCHES = [
    ("BM_AdamW_Step", "AdamW step"),
    ("BM_Adam_Step", "Adam step (L2 1e-2)"),
    ("BM_SGD_Step", "SGD step (momentum 0.9)"),
    ("BM_ClipGradNorm", "clip_grad_norm_"),
    ("BM_EMA_Step", "EMA step (diffusers)"),
]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", default="build/optim/bench/bench_optim", help="path of the bench_optim binary")
    p.add_argument("--threads", type=int, default=1, help="threads for both sides (default 1)")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds per measurement")
    p.add_argument("--repetitions", type=int, default=3, help="repetitions of each ddpm benchmark (best counts)")
    p.add_argument("--clock", choices=["cpu", "wall"], default=None,
                   help="cpu (default with 1 thread) or wall (default with more)")
    p.add_argument("--default-malloc", action="store_true", help="keep glibc's malloc thresholds for PyTorch")
    return p.parse_args()


def time_torch(fn, min_time, clock):
    """Best per-call time over repeated batches of calls (PyTorch at its best)."""
    fn()
    calls = 1
    while True:
        start = clock()
        for _ in range(calls):
            fn()
        if clock() - start > 0.2:
            break
        calls *= 2
    best = float("inf")
    deadline = time.perf_counter() + min_time
    while True:
        start = clock()
        for _ in range(calls):
            fn()
        best = min(best, (clock() - start) / calls)
        if time.perf_counter() >= deadline:
            break
    return best


def torch_times(sizes, threads, min_time, clock):
    import torch  # imported after the thread environment is set

    torch.set_num_threads(threads)
    torch.manual_seed(0)

    def make_params():
        params = [torch.nn.Parameter(0.05 * torch.randn(n)) for n in sizes]
        for p in params:
            p.grad = 1e-3 * torch.randn(p.numel())
        return params

    result = {}
    params = make_params()
    for name, make in [
        ("BM_AdamW_Step", lambda ps, fe: torch.optim.AdamW(ps, foreach=fe)),
        ("BM_Adam_Step", lambda ps, fe: torch.optim.Adam(ps, weight_decay=1e-2, foreach=fe)),
        ("BM_SGD_Step", lambda ps, fe: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, foreach=fe)),
    ]:
        best = {}
        for foreach in (False, True):
            opt = make(params, foreach)
            opt.step()  # creates the state
            best[foreach] = time_torch(opt.step, min_time, clock)
            del opt
        result[name] = (min(best.values()), best)

    with torch.no_grad():
        norm = float(torch.norm(torch.stack([torch.norm(p.grad) for p in params])))
    max_norm = 0.999999 * norm
    t = time_torch(lambda: torch.nn.utils.clip_grad_norm_(params, max_norm), min_time, clock)
    result["BM_ClipGradNorm"] = (t, {})

    shadow = [p.detach().clone() for p in params]
    weights = [p.detach() for p in params]
    one_minus_decay = 1 - 0.999

    def ema_loop():
        for s, p in zip(shadow, weights):
            s.sub_(one_minus_decay * (s - p))

    def ema_foreach():
        torch._foreach_sub_(shadow, torch._foreach_sub(shadow, weights), alpha=one_minus_decay)

    with torch.no_grad():
        loop = time_torch(ema_loop, min_time, clock)
        fe = time_torch(ema_foreach, min_time, clock)
    result["BM_EMA_Step"] = (min(loop, fe), {False: loop, True: fe})
    return result, torch.__version__


def ddpm_times(bench, threads, min_time, repetitions, clock):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [bench, "--benchmark_format=json", f"--benchmark_min_time={min_time}",
           f"--benchmark_repetitions={repetitions}", "--benchmark_filter=^BM_(AdamW|Adam|SGD|ClipGradNorm|EMA)_?"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    key = "cpu_time" if clock == "cpu" else "real_time"
    result = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("error_occurred"):
            raise RuntimeError(f"{b['name']}: {b.get('error_message')}")
        if b.get("run_type", "iteration") != "iteration":
            continue
        name = b["name"].split("/")[0]
        seconds = b[key] * {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
        entry = {"seconds": seconds, "triad_fraction": b.get("triad_fraction"),
                 "stream_fraction": b.get("stream_fraction")}
        best = result.get(name)
        if best is None or entry["seconds"] < best["seconds"]:
            result[name] = entry
    return result


MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}


def main():
    args = parse_args()
    if not args.default_malloc and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:],
                  dict(os.environ, **MALLOC_ENV))
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    clock_name = args.clock or ("cpu" if args.threads == 1 else "wall")
    sizes = [int(line) for line in subprocess.run([args.bench, "--print-sizes"], check=True, capture_output=True,
                                                   text=True).stdout.split()]
    ours = ddpm_times(args.bench, args.threads, args.min_time, args.repetitions, clock_name)
    clock = time.process_time if clock_name == "cpu" else time.perf_counter
    theirs, version = torch_times(sizes, args.threads, args.min_time, clock)
    print(f"PyTorch {version}, {args.threads} thread(s), {len(sizes)} tensors, {sum(sizes):,} parameters; "
          f"{clock_name} clock; ratio = PyTorch / ddpm\n")
    print("| operation | PyTorch (foreach=False / True) | ddpm | ratio | ddpm triad_fraction | ddpm stream_fraction |")
    print("|---|---|---|---|---|---|")
    for name, label in BENCHES:
        t, variants = theirs[name]
        o = ours[name]
        detail = ""
        if variants:
            detail = f" ({variants[False] * 1e3:.1f} / {variants[True] * 1e3:.1f})"
        print(f"| {label} | {t * 1e3:.1f} ms{detail} | {o['seconds'] * 1e3:.1f} ms | {t / o['seconds']:.2f}x "
              f"| {o['triad_fraction']:.2f} | {o['stream_fraction']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
