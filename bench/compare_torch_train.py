#!/usr/bin/python3
"""PyTorch's training step on the shapes of bench_train, and (with --bench) the side-by-side table.

Needs Debian's python3-torch, which installs for Debian's own interpreter: run it as
    /usr/bin/python3 bench/compare_torch_train.py [--bench build/<dir>/bench/bench_train] [--steps 7]
        [--peak 219,455 | --measure-peak] [--only small/32/1 ...] [--rounds 3]

One training step, as a PyTorch user writes it: the forward pass of the UNet2DModel of
tests/reference/make_unet_fixture.py (diffusers' names and arithmetic) in train mode on x_t with random
timesteps, F.mse_loss against eps, backward, torch.optim.AdamW.step() (PyTorch 1.13's default for-loop
implementation; lr 1e-4) and optimizer.zero_grad(set_to_none=True). No gradient clipping, no EMA.

Configurations (the CONFIGS table below; BENCH_NAMES maps each one to the benchmark of our bench_train):
- small: block_out_channels (32, 64), layers_per_block 1, norm_num_groups 8, attention_head_dim 8 (so 4 and
  8 heads), DownBlock2D + AttnDownBlock2D (attention at 8x8; the mid block's attention at 8x8 too),
  AttnUpBlock2D + UpBlock2D, 16x16, 3 channels in and out; batch 32 and 64.
- cifar10: the DDPM-CIFAR10 shape (block_out_channels 128, 256, 256, 256; two layers per block; attention at
  16x16; shared/REFERENCE-FACTS.md; 35,746,307 parameters), 32x32, batch 8.
each on 1 and 2 threads.

PyTorch at its best, as bench/compare_torch_unet.py measures it: every (configuration, memory format) runs in a
fresh process with OPENBLAS_NUM_THREADS=1 set before torch is imported (OpenBLAS's own pool otherwise spins
against PyTorch's; libopenblas0-pthread must be installed, the script warns when PyTorch loaded the reference
BLAS), OMP_NUM_THREADS and torch.set_num_threads equal to the thread count, glibc's MALLOC_MMAP_THRESHOLD_ and
MALLOC_TRIM_THRESHOLD_ raised (as bench/compare_torch.py: freed tensors stay in the heap instead of being
page-faulted in again every step; --default-malloc keeps glibc's defaults), both channels-first and
channels-last tried and the faster kept. --warmup steps (default 2) are run first, then the median (and the
best) of --steps timed steps, wall clock; the median process CPU time per step is printed beside it (on a
machine loaded by other work, the 1-thread CPU time is the better estimate of the unloaded step).

FLOPs: the forward pass is counted as 2 x the multiply-adds of the direct convolutions and linear layers
(forward hooks on nn.Conv2d / nn.Linear: Cout * Cin/groups * kh * kw * Hout * Wout per image) plus the two
attention products QK^T and PV (2 x 2 x HW x HW x head_dim x heads per image); norms, activations, softmax and
additions are not counted. That is the convention of docs/benchmarks.md (12.44 GFLOP per 32x32 image for the
CIFAR10 forward; the script prints its own count). A training step is counted as 3x the forward FLOPs
(backward = d_input + d_weight, each as costly as the forward). GFLOP/s = 3 x forward FLOP x batch / seconds.
--peak gives the machine's FP32 FMA peak on 1 and 2 threads in GFLOP/s (from bench_core or shared/PERF-NOTES.md)
to print the fraction of it; --measure-peak compiles a small AVX-512 (or AVX2) FMA loop with cc and measures it
in the same run (2 threads for the 2-thread figure).

Memory: in a fresh process, the growth of the peak resident set (VmHWM of /proc/self/status) over the first
training step, after the model, the batch and one untimed forward-free setup exist; it includes what the first
AdamW step allocates for its state (exp_avg, exp_avg_sq: 2 x 4 bytes per parameter, also printed) and the
gradients (4 bytes per parameter). Measured in channels-first and channels-last separately.

--rounds K repeats both sides' measurements K times, alternating (ours, then PyTorch's processes), and keeps each
side's fastest round (ours: the lowest mean step; PyTorch: the lowest median): on a machine shared with other work,
which only ever slows a round down, the ratio of the two fastest rounds is the steadiest estimate.

--bench runs our Google Benchmark binary once with --benchmark_format=json (filter BM_Train_Step) and prints
the table with the ratio PyTorch time / ddpm time (above 1: ddpm faster); a counter named like "peak_bytes"
in our benchmark is printed beside PyTorch's RSS growth.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

SMALL_CONFIG = {
    "sample_size": 16, "in_channels": 3, "out_channels": 3, "block_out_channels": [32, 64],
    "layers_per_block": 1, "norm_num_groups": 8, "attention_head_dim": 8,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
}

# name -> (model config, image size); CIFAR10_CONFIG is imported from tests/reference in the child process
MODELS = {"small": ("SMALL", 16), "cifar10": ("CIFAR10", 32)}

# (model, batch, threads)
CONFIGS = [("small", 32, 1), ("small", 32, 2), ("small", 64, 1), ("small", 64, 2), ("cifar10", 8, 1),
           ("cifar10", 8, 2)]

# Our bench_train's benchmark for each configuration: adapt here when the C++ names change. A benchmark whose
# name starts with the string (followed by "/" or the end) is taken; aggregates (_mean, _median) are skipped.
BENCH_NAMES = {
    ("small", 32, 1): "BM_Train_Step/small/32/1",
    ("small", 32, 2): "BM_Train_Step/small/32/2",
    ("small", 64, 1): "BM_Train_Step/small/64/1",
    ("small", 64, 2): "BM_Train_Step/small/64/2",
    ("cifar10", 8, 1): "BM_Train_Step/cifar10/8/1",
    ("cifar10", 8, 2): "BM_Train_Step/cifar10/8/2",
}
BENCH_FILTER = "BM_Train_Step"

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", default=None, help="path of our bench_train binary (omit: PyTorch only)")
    p.add_argument("--steps", type=int, default=7, help="timed steps per configuration and format (median)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--peak", default=None, help="FP32 FMA peak in GFLOP/s on 1 and 2 threads, e.g. 219,455")
    p.add_argument("--measure-peak", action="store_true", help="measure the FMA peak with a compiled loop")
    p.add_argument("--only", nargs="*", default=None, help="configurations as model/batch/threads")
    p.add_argument("--formats", default="channels_first,channels_last")
    p.add_argument("--default-malloc", action="store_true", help="keep glibc's malloc thresholds")
    p.add_argument("--json", default=None, help="also write the results as JSON to this file")
    p.add_argument("--rounds", type=int, default=1,
                   help="run ours and PyTorch's measurements this many times, alternating, and keep each side's "
                        "fastest round (on a shared machine other work only ever slows a round down)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p.parse_args()


# ------------------------------------------------------------------------------------------------------------
# The child process: one configuration in one memory format


def vm_hwm_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def count_forward_flops(torch, model, x, t):
    """2 x multiply-adds of convs, linears and the attention products of one forward pass, per image."""
    import torch.nn as nn
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
    from make_unet_fixture import Attention

    total = [0]

    def conv_hook(m, inp, out):
        kh, kw = m.kernel_size
        total[0] += 2 * out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m, inp, out):
        total[0] += 2 * out.numel() * m.in_features

    def attn_hook(m, inp, out):
        b, c, h, w = inp[0].shape
        total[0] += 2 * 2 * b * m.heads * (h * w) * (h * w) * m.head_dim

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, Attention):
            hooks.append(m.register_forward_hook(attn_hook))
    with torch.no_grad():
        model(x[:1], t[:1])
    for h in hooks:
        h.remove()
    return total[0]


def child(spec):
    name, batch, threads, fmt, steps, warmup = spec.split(":")
    batch, threads, steps, warmup = int(batch), int(threads), int(steps), int(warmup)
    import torch  # OPENBLAS_NUM_THREADS and OMP_NUM_THREADS were set by the parent
    import torch.nn.functional as F

    sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
    from make_unet_fixture import CIFAR10_CONFIG, UNet2DModel

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = SMALL_CONFIG if MODELS[name][0] == "SMALL" else CIFAR10_CONFIG
    size = MODELS[name][1]
    model = UNet2DModel(cfg).train()
    n_params = sum(p.numel() for p in model.parameters())
    x0 = torch.randn(batch, 3, size, size)
    flops = count_forward_flops(torch, model, x0, torch.zeros(batch, dtype=torch.int64))
    if fmt == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(1)
    T = 1000
    alphas_cumprod = torch.cumprod(1 - torch.linspace(1e-4, 0.02, T), 0)

    def batch_data():
        x = torch.randn(batch, 3, size, size, generator=gen).clamp(-1, 1)
        eps = torch.randn(batch, 3, size, size, generator=gen)
        t = torch.randint(0, T, (batch,), generator=gen)
        a = alphas_cumprod[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x + (1 - a).sqrt() * eps
        if fmt == "channels_last":
            xt = xt.contiguous(memory_format=torch.channels_last)
            eps = eps.contiguous(memory_format=torch.channels_last)
        return xt, t, eps

    def step(xt, t, eps):
        loss = F.mse_loss(model(xt, t), eps)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    data = [batch_data() for _ in range(max(1, warmup + steps))]
    hwm_before = vm_hwm_kib()
    step(*data[0])  # the first step of the process: its peak RSS growth
    hwm_after = vm_hwm_kib()
    for i in range(1, warmup):
        step(*data[i % len(data)])
    times, cpu = [], []
    for i in range(steps):
        xt, t, eps = data[(warmup + i) % len(data)]
        start, start_cpu = time.perf_counter(), time.process_time()
        step(xt, t, eps)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    with open("/proc/self/maps") as maps:
        blas = sorted({line.split()[-1] for line in maps if "libblas" in line or "libopenblas" in line})
    return dict(times=times, cpu=cpu, flops_per_image=flops, params=n_params, rss_growth=(hwm_after - hwm_before) * 1024,
                hwm_before=hwm_before * 1024, blas=blas, torch=torch.__version__)


def run_child(name, batch, threads, fmt, steps, warmup):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    spec = f"{name}:{batch}:{threads}:{fmt}:{steps}:{warmup}"
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", spec], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------------------
# FMA peak

PEAK_C = r"""
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#if defined(__AVX512F__)
typedef __m512 V;
#define W 16
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define ADD _mm512_add_ps
#define RED(v) _mm512_reduce_add_ps(v)
#else
typedef __m256 V;
#define W 8
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define ADD _mm256_add_ps
static float RED(__m256 v) { float f[8]; _mm256_storeu_ps(f, v); float s = 0; for (int i = 0; i < 8; ++i) s += f[i]; return s; }
#endif
static long iters;
static void* run(void* out) {
  V a0 = SET1(1.0f), a1 = SET1(1.1f), a2 = SET1(1.2f), a3 = SET1(1.3f), a4 = SET1(1.4f), a5 = SET1(1.5f);
  V a6 = SET1(1.6f), a7 = SET1(1.7f), a8 = SET1(1.8f), a9 = SET1(1.9f), a10 = SET1(2.0f), a11 = SET1(2.1f);
  const V m = SET1(0.999999f), c = SET1(1e-7f);
  for (long i = 0; i < iters; ++i) {
    a0 = FMA(a0, m, c); a1 = FMA(a1, m, c); a2 = FMA(a2, m, c); a3 = FMA(a3, m, c);
    a4 = FMA(a4, m, c); a5 = FMA(a5, m, c); a6 = FMA(a6, m, c); a7 = FMA(a7, m, c);
    a8 = FMA(a8, m, c); a9 = FMA(a9, m, c); a10 = FMA(a10, m, c); a11 = FMA(a11, m, c);
  }
  V s = ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7)));
  s = ADD(s, ADD(ADD(a8, a9), ADD(a10, a11)));
  *(float*)out = RED(s);
  return 0;
}
int main(int argc, char** argv) {
  int threads = atoi(argv[1]);
  iters = atol(argv[2]);
  pthread_t t[64];
  float out[64];
  struct timespec a, b;
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < threads; ++i) pthread_create(&t[i], 0, run, &out[i]);
    for (int i = 0; i < threads; ++i) pthread_join(t[i], 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (b.tv_sec - a.tv_sec) + 1e-9 * (b.tv_nsec - a.tv_nsec);
    double g = 2.0 * 12 * W * (double)iters * threads / s / 1e9;
    if (g > best) best = g;
  }
  printf("%.1f %f\n", best, out[0]);
  return 0;
}
"""


def measure_peak():
    """Best GFLOP/s of 12 independent FMA chains per thread on 1 and 2 threads, or None without a compiler."""
    with tempfile.TemporaryDirectory() as d:
        src, exe = os.path.join(d, "peak.c"), os.path.join(d, "peak")
        with open(src, "w") as f:
            f.write(PEAK_C)
        try:
            subprocess.run(["cc", "-O2", "-march=native", src, "-o", exe, "-lpthread"], check=True,
                           capture_output=True)
        except (OSError, subprocess.CalledProcessError):
            return None
        return [float(subprocess.run([exe, str(n), "200000000"], check=True, capture_output=True,
                                     text=True).stdout.split()[0]) for n in (1, 2)]


# ------------------------------------------------------------------------------------------------------------
# Our benchmark


def run_ours(bench, keys):
    names = "|".join(BENCH_NAMES[k] for k in keys if k in BENCH_NAMES) or BENCH_FILTER
    out = subprocess.run([bench, f"--benchmark_filter=^({names})(/|$)", "--benchmark_format=json"], check=True,
                         capture_output=True, text=True).stdout
    data = json.loads(out)
    found = {}
    for key, prefix in BENCH_NAMES.items():
        for b in data["benchmarks"]:
            n = b["name"]
            if b.get("run_type") == "aggregate" or not (n == prefix or n.startswith(prefix + "/")):
                continue
            unit = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
            mem = next((v for k, v in b.items() if "peak" in k.lower() and "byte" in k.lower()), None)
            prev = found.get(key)
            if prev is None or b["real_time"] * unit < prev[0]:
                # cpu_time is the process's CPU time per step when the benchmark measures process CPU time
                found[key] = (b["real_time"] * unit, mem, n, b["cpu_time"] * unit)
    return found


# ------------------------------------------------------------------------------------------------------------


def main():
    args = parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    if not args.default_malloc and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:],
                  dict(os.environ, **MALLOC_ENV))
    configs = CONFIGS if not args.only else [c for c in CONFIGS if f"{c[0]}/{c[1]}/{c[2]}" in args.only]
    peak = None
    if args.measure_peak:
        peak = measure_peak()
    elif args.peak:
        peak = [float(v) for v in args.peak.split(",")]
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[:3]
    # Each round: our benchmark, then PyTorch's processes. Kept per configuration: our fastest round (its
    # mean step time) and PyTorch's round with the fastest median step.
    ours, kept = {}, {}
    for rnd in range(max(1, args.rounds)):
        if args.bench:
            for key, o in run_ours(args.bench, configs).items():
                if key not in ours or o[0] < ours[key][0]:
                    ours[key] = o
                print(f"# round {rnd + 1}: ddpm {key[0]} batch {key[1]} threads {key[2]}: {o[0]:.4f} s",
                      file=sys.stderr, flush=True)
        for name, batch, threads in configs:
            per_fmt = {}
            for fmt in args.formats.split(","):
                r = run_child(name, batch, threads, fmt, args.steps, args.warmup)
                per_fmt[fmt] = r
                print(f"# round {rnd + 1}: {name} batch {batch} threads {threads} {fmt}: median "
                      f"{statistics.median(r['times']):.4f} s, best {min(r['times']):.4f} s, RSS growth "
                      f"{r['rss_growth'] / 2**20:.1f} MiB", file=sys.stderr, flush=True)
            fmt, best = min(per_fmt.items(), key=lambda kv: statistics.median(kv[1]["times"]))
            key = (name, batch, threads)
            if key not in kept or statistics.median(best["times"]) < statistics.median(kept[key][1]["times"]):
                kept[key] = (fmt, best, per_fmt)
    rows = [(name, batch, threads) + kept[(name, batch, threads)] for name, batch, threads in configs]
    with open("/proc/loadavg") as f:
        load_after = f.read().split()[:3]

    first = rows[0][4]
    print(f"PyTorch {first['torch']}, BLAS {', '.join(first['blas']) or 'none found'}; "
          f"load average {' '.join(load_before)} before, {' '.join(load_after)} after"
          + (f"; {args.rounds} alternating rounds, each side's fastest kept" if args.rounds > 1 else ""))
    if not any("openblas" in p or "mkl" in p for p in first["blas"]):
        print("warning: PyTorch is not using OpenBLAS (apt-get install libopenblas0-pthread)")
    for name in dict.fromkeys(r[0] for r in rows):
        r = next(x for x in rows if x[0] == name)[4]
        print(f"{name}: {r['params']:,} parameters, forward {r['flops_per_image'] / 1e9:.4f} GFLOP per image, "
              f"training step counted as 3x")
    if peak:
        print(f"FP32 FMA peak: {peak[0]:.0f} GFLOP/s on 1 thread, {peak[1]:.0f} on 2"
              + (" (measured in this run)" if args.measure_peak else " (given)"))
    print()
    head = "| model | batch | threads | PyTorch s/step (median) | best | GFLOP/s |"
    sep = "|---|---:|---:|---:|---:|---:|"
    if peak:
        head += " of peak |"
        sep += "---:|"
    head += " CPU s/step |"
    sep += "---:|"
    head += " format | channels-first / channels-last (s) | RSS growth, 1st step (MiB) |"
    sep += "---|---|---:|"
    if args.bench:
        head += " ddpm s/step | ddpm GFLOP/s | ddpm peak (MiB) | PyTorch / ddpm | ddpm CPU s/step | CPU ratio |"
        sep += "---:|---:|---:|---:|---:|---:|"
    print(head)
    print(sep)
    out_json = []
    for name, batch, threads, fmt, best, per_fmt in rows:
        med = statistics.median(best["times"])
        gflop = 3 * best["flops_per_image"] * batch / 1e9
        line = f"| {name} | {batch} | {threads} | {med:.4f} | {min(best['times']):.4f} | {gflop / med:.1f} |"
        if peak:
            line += f" {gflop / med / peak[threads - 1] * 100:.0f}% |"
        line += f" {statistics.median(best['cpu']):.4f} |"
        fmts = " / ".join(f"{statistics.median(per_fmt[f]['times']):.4f}" for f in per_fmt)
        rss = " / ".join(f"{per_fmt[f]['rss_growth'] / 2**20:.1f}" for f in per_fmt)
        line += f" {fmt.replace('_', '-')} | {fmts} | {rss} |"
        entry = dict(model=name, batch=batch, threads=threads, format=fmt, median_s=med, best_s=min(best["times"]),
                     cpu_s=statistics.median(best["cpu"]),
                     gflops=gflop / med, formats={f: per_fmt[f]["times"] for f in per_fmt},
                     rss_growth={f: per_fmt[f]["rss_growth"] for f in per_fmt})
        if args.bench:
            o = ours.get((name, batch, threads))
            if o is None:
                line += " - | - | - | - | - | - |"
            else:
                mem = f"{o[1] / 2**20:.1f}" if o[1] is not None else "-"
                cpu_ratio = statistics.median(best["cpu"]) / o[3]
                line += f" {o[0]:.4f} | {gflop / o[0]:.1f} | {mem} | {med / o[0]:.2f} | {o[3]:.4f} | {cpu_ratio:.2f} |"
                entry.update(ddpm_s=o[0], ddpm_name=o[2], ddpm_peak_bytes=o[1], ddpm_cpu_s=o[3])
        print(line)
        out_json.append(entry)
    print()
    print("CPU s/step: the median process CPU time of a step (all threads summed; with 1 thread on a loaded "
          "machine it is the better estimate of the unloaded wall time; with 2 threads it includes OpenMP's "
          "spin-waiting).")
    if args.bench:
        print("ddpm CPU s/step: our benchmark's process CPU time per step (it measures process CPU time); CPU ratio: "
              "PyTorch's CPU s/step over ddpm's (with 1 thread on a loaded machine, the better estimate of the "
              "unloaded ratio; with 2 threads PyTorch's includes OpenMP's spin-waiting).")
    print("RSS growth: VmHWM after minus before the first step of a fresh process, channels-first / channels-last; "
          "it includes the gradients (4 B per parameter) and AdamW's state (8 B per parameter).")
    for name in dict.fromkeys(r[0] for r in rows):
        p = next(x for x in rows if x[0] == name)[4]["params"]
        print(f"  {name}: gradients + AdamW state = {12 * p / 2**20:.1f} MiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(peak=peak, load=[load_before, load_after], rows=out_json), f, indent=1)


if __name__ == "__main__":
    main()
