#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The ddpm authors
"""Reference values for ddpm's core math, written to tests/data/core/*.json.

An independent float64 NumPy implementation of the noise schedules, improved-DDPM respacing, the
zero-terminal-SNR rescale, the forward process, the posterior and the eps / x0 / v conversions, written
from the formulas of docs/math.md (and the published semantics of diffusers and improved-diffusion), not
from the C++ code. The C++ tests (tests/core/*.test.cpp) compare against these files; they never run
Python.

Run with Debian's interpreter (it has NumPy):   /usr/bin/python3 tests/reference/make_core_fixtures.py
The output is deterministic: a fixed seed, and every number printed as the repr of a float64 (the
shortest string that reads back to the same double). Non-finite values are written as the strings
"inf", "-inf" and "nan", since JSON has no literal for them.
"""

import json
import math
import os
import sys

import numpy as np

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "core")
SEED = 20260101


# --------------------------------------------------------------------------------------------------
# Schedules: betas from a recipe (a small dict that the C++ test turns into the same constructor call)


def betas_linear(T, beta_start, beta_end):
    # Evenly spaced betas including both ends.
    return np.linspace(beta_start, beta_end, T, dtype=np.float64)


def betas_scaled_linear(T, beta_start, beta_end):
    # Evenly spaced in sqrt(beta), then squared.
    return np.linspace(math.sqrt(beta_start), math.sqrt(beta_end), T, dtype=np.float64) ** 2


def betas_cosine(T, s, max_beta):
    # alpha_bar(u) = cos^2(((u + s) / (1 + s)) * pi / 2) on u = i / T; beta_i is one minus the ratio of
    # consecutive alpha_bar values, capped at max_beta.
    def alpha_bar(u):
        c = math.cos((u + s) / (1.0 + s) * math.pi / 2.0)
        return c * c

    out = np.empty(T, dtype=np.float64)
    for i in range(T):
        out[i] = min(1.0 - alpha_bar((i + 1) / T) / alpha_bar(i / T), max_beta)
    return out


def betas_sigmoid(T, beta_start, beta_end):
    # GeoDiff / diffusers "sigmoid": a logistic curve over [-6, 6] scaled into [beta_start, beta_end].
    u = np.linspace(-6.0, 6.0, T, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-u)) * (beta_end - beta_start) + beta_start


def rescale_zero_terminal_snr(betas):
    # Lin et al. 2024, Algorithm 1: shift sqrt(alpha_bar) so that its last value is 0, scale it so that its
    # first value is unchanged, and read the betas back off the new alpha_bar.
    root = np.sqrt(np.cumprod(1.0 - betas))
    first, last = root[0], root[-1]
    root = (root - last) * first / (first - last)
    ab = root * root
    alphas = np.empty_like(ab)
    alphas[0] = ab[0]
    alphas[1:] = ab[1:] / ab[:-1]
    out = 1.0 - alphas
    out[-1] = 1.0  # the last root is exactly 0 after the shift
    return out


def betas_from_recipe(recipe):
    kind = recipe["kind"]
    if kind == "linear":
        return betas_linear(recipe["T"], recipe["beta_start"], recipe["beta_end"])
    if kind == "scaled_linear":
        return betas_scaled_linear(recipe["T"], recipe["beta_start"], recipe["beta_end"])
    if kind == "cosine":
        return betas_cosine(recipe["T"], recipe["s"], recipe["max_beta"])
    if kind == "sigmoid":
        return betas_sigmoid(recipe["T"], recipe["beta_start"], recipe["beta_end"])
    if kind == "zero_terminal_snr":
        return rescale_zero_terminal_snr(betas_from_recipe(recipe["of"]))
    raise ValueError(kind)


def derived(betas):
    """Every per-timestep array of a schedule, by its C++ accessor name."""
    with np.errstate(divide="ignore"):
        alphas = 1.0 - betas
        ab = np.cumprod(alphas)
        ab_prev = np.concatenate([[1.0], ab[:-1]])
        one_minus = 1.0 - ab
        post_var = betas * (1.0 - ab_prev) / one_minus
        # log of the posterior variance, its index 0 (variance 0) replaced by index 1
        post_log = np.log(np.concatenate([post_var[1:2], post_var[1:]]))
        return {
            "betas": betas,
            "alphas": alphas,
            "alphas_cumprod": ab,
            "alphas_cumprod_prev": ab_prev,
            "sqrt_alphas_cumprod": np.sqrt(ab),
            "sqrt_one_minus_alphas_cumprod": np.sqrt(one_minus),
            "one_minus_alphas_cumprod": one_minus,
            "log_one_minus_alphas_cumprod": np.log(one_minus),
            "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / ab),
            "sqrt_recipm1_alphas_cumprod": np.sqrt(one_minus / ab),
            "posterior_variance": post_var,
            "posterior_log_variance_clipped": post_log,
            "posterior_mean_coef1": betas * np.sqrt(ab_prev) / one_minus,
            "posterior_mean_coef2": (1.0 - ab_prev) * np.sqrt(alphas) / one_minus,
            "snr": ab / one_minus,
            "sigmas": np.sqrt(one_minus / ab),
        }


def linear(T=1000, beta_start=1e-4, beta_end=0.02):
    return {"kind": "linear", "T": T, "beta_start": beta_start, "beta_end": beta_end}


def scaled_linear(T=1000, beta_start=0.00085, beta_end=0.012):
    return {"kind": "scaled_linear", "T": T, "beta_start": beta_start, "beta_end": beta_end}


def cosine(T=1000, s=0.008, max_beta=0.999):
    return {"kind": "cosine", "T": T, "s": s, "max_beta": max_beta}


def sigmoid(T=1000, beta_start=1e-4, beta_end=0.02):
    return {"kind": "sigmoid", "T": T, "beta_start": beta_start, "beta_end": beta_end}


def zero_snr(of):
    return {"kind": "zero_terminal_snr", "T": of["T"], "of": of}


# Indices stored for the T = 1000 schedules (every index is stored for small T); alphas_cumprod is also
# stored in full for the schedules named in FULL_ALPHAS_CUMPROD.
SAMPLE_1000 = [0, 1, 2, 3, 4, 5, 10, 50, 99, 100, 101, 250, 499, 500, 501, 750, 900, 990, 995, 996, 997, 998, 999]


FULL_ALPHAS_CUMPROD = ("linear_1000", "cosine_1000", "zero_snr_linear_1000")


def schedule_cases():
    return [
        ("linear_1000", linear()),
        ("linear_10", linear(10)),
        ("linear_50_improved_diffusion_scaled", linear(50, 1e-4 * 1000 / 50, 0.02 * 1000 / 50)),
        ("scaled_linear_1000", scaled_linear()),
        ("scaled_linear_10", scaled_linear(10)),
        ("cosine_1000", cosine()),
        ("cosine_10", cosine(10)),
        ("cosine_16_s0_cap0.3", cosine(16, 0.0, 0.3)),
        ("sigmoid_1000", sigmoid()),
        ("sigmoid_10", sigmoid(10)),
        ("zero_snr_linear_1000", zero_snr(linear())),
        ("zero_snr_scaled_linear_10", zero_snr(scaled_linear(10))),
        ("zero_snr_cosine_1000", zero_snr(cosine())),
    ]


# --------------------------------------------------------------------------------------------------
# Respacing (improved-diffusion semantics)


def space_timesteps(T, spec):
    """The kept timesteps, sorted."""
    if spec.startswith("ddim"):
        n = int(spec[4:])
        for stride in range(1, T):
            kept = list(range(0, T, stride))
            if len(kept) == n:
                return kept
        raise ValueError("no stride")
    counts = [int(c) for c in spec.split(",")]
    base, extra = divmod(T, len(counts))
    kept = []
    start = 0
    for i, n in enumerate(counts):
        size = base + (1 if i < extra else 0)
        if not 1 <= n <= size:
            raise ValueError("bad section")
        step = 1.0 if n == 1 else (size - 1) / (n - 1)
        pos = 0.0
        for _ in range(n):
            kept.append(start + round(pos))  # Python's round: half to even
            pos += step
        start += size
    return sorted(set(kept))


def respaced_betas(betas, kept):
    ab = np.cumprod(1.0 - betas)[kept]
    prev = np.concatenate([[1.0], ab[:-1]])
    return 1.0 - ab / prev


SPACING_CASES = [
    (1000, "ddim50"), (1000, "ddim25"), (1000, "ddim10"), (1000, "ddim1000"), (1000, "10"), (1000, "7,3,1"),
    (1000, "10,15,20"), (1000, "250"), (1000, "1000"), (1000, "1"), (1000, "500,500"), (300, "10,15,20"),
    (10, "ddim5"), (10, "ddim4"), (10, "ddim3"), (10, "3"), (10, "2,2"), (10, "1,2,3"), (10, "10"),
    (9, "4"), (7, "3"), (1, "1"), (25, "ddim9"), (100, "ddim34"),
]

RESPACE_CASES = [
    ("linear_1000", linear(), "ddim50"),
    ("linear_1000", linear(), "7,3,1"),
    ("cosine_1000", cosine(), "10,15,20"),
    ("zero_snr_linear_1000", zero_snr(linear()), "250"),
    ("scaled_linear_10", scaled_linear(10), "1,2,3"),
]


# --------------------------------------------------------------------------------------------------
# Forward process, posterior and conversions on fixed random inputs

SHAPE = (3, 2, 4, 4)
POINTS_SHAPE = (4, 2)  # tiny samples (fewer than 16 values each)
TIMESTEPS = [0, 1, 500, 999]
PER_SAMPLE_T = [0, 500, 999]
POINTS_T = [999, 0, 1, 500]
TENSOR_SCHEDULES = [("linear_1000", linear()), ("cosine_1000", cosine()),
                    ("zero_snr_linear_1000", zero_snr(linear()))]


def float32_exact(rng, shape):
    # Inputs exactly representable in float32, so the float tests see the same inputs as the double ones.
    return rng.standard_normal(shape).astype(np.float32).astype(np.float64)


def lincomb(a, x, c, y):
    """a * x + c * y with a, c scalars or one per batch element; also returns [a, c] for the file."""
    a = np.asarray(a, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    bshape = (-1,) + (1,) * (x.ndim - 1)
    out = a.reshape(bshape) * x + c.reshape(bshape) * y if a.ndim else a * x + c * y
    coef = [float(a), float(c)] if a.ndim == 0 else [[float(p), float(q)] for p, q in zip(a, c)]
    return out, coef


def forward_cases(sched, x0, noise):
    betas = sched["betas"]
    ab = sched["alphas_cumprod"]
    out = {"q_sample": {}, "q_step": {}, "q_mean_variance": {}}
    for t in TIMESTEPS:
        v, coef = lincomb(math.sqrt(ab[t]), x0, math.sqrt(1.0 - ab[t]), noise)
        out["q_sample"][str(t)] = {"coef": coef, "out": v}
        v, coef = lincomb(math.sqrt(1.0 - betas[t]), x0, math.sqrt(betas[t]), noise)
        out["q_step"][str(t)] = {"coef": coef, "out": v}
        v, coef = lincomb(math.sqrt(ab[t]), x0, 0.0, x0)
        var = 1.0 - ab[t]
        out["q_mean_variance"][str(t)] = {"coef": coef, "mean": v, "variance": var, "log_variance": math.log(var)}
    tb = np.array(PER_SAMPLE_T)
    v, coef = lincomb(np.sqrt(ab[tb]), x0, np.sqrt(1.0 - ab[tb]), noise)
    out["q_sample_per_sample"] = {"t": PER_SAMPLE_T, "coef": coef, "out": v}
    v, coef = lincomb(np.sqrt(1.0 - betas[tb]), x0, np.sqrt(betas[tb]), noise)
    out["q_step_per_sample"] = {"t": PER_SAMPLE_T, "coef": coef, "out": v}
    return out


def posterior_cases(sched, x0, x_t, eps, v):
    betas = sched["betas"]
    ab = sched["alphas_cumprod"]
    out = {k: {} for k in ("q_posterior", "predict_x0_from_eps", "predict_eps_from_x0", "predict_v",
                           "predict_x0_from_v", "predict_eps_from_v")}
    for t in TIMESTEPS:
        key = str(t)
        a = ab[t]
        a_prev = ab[t - 1] if t > 0 else 1.0
        c1 = betas[t] * math.sqrt(a_prev) / (1.0 - a)
        c2 = (1.0 - a_prev) * math.sqrt(1.0 - betas[t]) / (1.0 - a)
        var = betas[t] * (1.0 - a_prev) / (1.0 - a)
        if t == 0:
            nxt = ab[1]
            log_var = math.log(betas[1] * (1.0 - ab[0]) / (1.0 - nxt))
        else:
            log_var = math.log(var)
        mean, coef = lincomb(c1, x0, c2, x_t)
        out["q_posterior"][key] = {"coef": coef, "mean": mean, "variance": var, "log_variance": log_var}
        if a > 0.0:
            # x0 = (x_t - sqrt(1 - a) eps) / sqrt(a)
            r, coef = lincomb(1.0 / math.sqrt(a), x_t, -math.sqrt(1.0 - a) / math.sqrt(a), eps)
            out["predict_x0_from_eps"][key] = {"coef": coef, "out": r}
        # eps = (x_t - sqrt(a) x0) / sqrt(1 - a)
        r, coef = lincomb(1.0 / math.sqrt(1.0 - a), x_t, -math.sqrt(a) / math.sqrt(1.0 - a), x0)
        out["predict_eps_from_x0"][key] = {"coef": coef, "out": r}
        r, coef = lincomb(-math.sqrt(1.0 - a), x0, math.sqrt(a), eps)
        out["predict_v"][key] = {"coef": coef, "out": r}
        r, coef = lincomb(math.sqrt(a), x_t, -math.sqrt(1.0 - a), v)
        out["predict_x0_from_v"][key] = {"coef": coef, "out": r}
        r, coef = lincomb(math.sqrt(1.0 - a), x_t, math.sqrt(a), v)
        out["predict_eps_from_v"][key] = {"coef": coef, "out": r}
    return out


# --------------------------------------------------------------------------------------------------
# Output


def number(x):
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def plain(obj):
    """NumPy arrays -> flat lists of numbers, recursively."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return [number(x) for x in obj.reshape(-1)]
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return number(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def dumps(obj, indent=0):
    """JSON with objects indented and lists of scalars on one line; floats as repr (full precision)."""
    pad = "  " * indent
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f'{pad}  {json.dumps(k)}: {dumps(v, indent + 1)}' for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list):
        if all(not isinstance(v, (dict, list)) for v in obj):
            return "[" + ",".join(dumps(v) for v in obj) + "]"
        items = [pad + "  " + dumps(v, indent + 1) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    if isinstance(obj, float):
        assert math.isfinite(obj)
        return repr(obj)
    return json.dumps(obj)


def write(name, obj):
    path = os.path.join(OUT_DIR, name)
    text = dumps(plain(obj)) + "\n"
    json.loads(text)  # well-formed
    with open(path, "w", encoding="ascii") as f:
        f.write(text)
    print(f"{path}: {len(text)} bytes")


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    note = "Generated by tests/reference/make_core_fixtures.py (float64 NumPy reference); do not edit."

    # schedules.json
    schedules = []
    for name, recipe in schedule_cases():
        T = recipe["T"]
        arrays = derived(betas_from_recipe(recipe))
        idx = SAMPLE_1000 if T == 1000 else list(range(T))
        entry = {"name": name, "recipe": recipe, "indices": idx, "arrays": {k: v[idx] for k, v in arrays.items()}}
        if name in FULL_ALPHAS_CUMPROD:
            entry["alphas_cumprod_all"] = arrays["alphas_cumprod"]
        schedules.append(entry)
    write("schedules.json", {"note": note, "schedules": schedules})

    # spacing.json
    spacing = [{"T": T, "spec": spec, "kept": space_timesteps(T, spec)} for T, spec in SPACING_CASES]
    respace = []
    for name, recipe, spec in RESPACE_CASES:
        betas = betas_from_recipe(recipe)
        kept = space_timesteps(recipe["T"], spec)
        new_betas = respaced_betas(betas, kept)
        entry = {"name": name, "recipe": recipe, "spec": spec, "kept": kept, "betas": new_betas,
                 "alphas_cumprod": np.cumprod(1.0 - new_betas)}
        respace.append(entry)
    # Two respacings in a row: linear_1000 -> "ddim50" -> "10" of those 50.
    betas = betas_from_recipe(linear())
    k1 = space_timesteps(1000, "ddim50")
    b1 = respaced_betas(betas, k1)
    k2 = space_timesteps(len(k1), "10")
    b2 = respaced_betas(b1, k2)
    nested = {"recipe": linear(), "first": "ddim50", "second": "10", "kept_first": k1, "kept_second": k2,
              "timestep_map": [k1[i] for i in k2], "betas": b2, "alphas_cumprod": np.cumprod(1.0 - b2)}
    write("spacing.json", {"note": note, "space_timesteps": spacing, "respace": respace, "respace_twice": nested})

    # forward.json and posterior.json
    rng = np.random.default_rng(SEED)
    x0 = float32_exact(rng, SHAPE)
    noise = float32_exact(rng, SHAPE)
    x_t = float32_exact(rng, SHAPE)
    eps = float32_exact(rng, SHAPE)
    v = float32_exact(rng, SHAPE)
    px0 = float32_exact(rng, POINTS_SHAPE)
    pnoise = float32_exact(rng, POINTS_SHAPE)

    fwd = {"note": note, "shape": list(SHAPE), "timesteps": TIMESTEPS, "per_sample_t": PER_SAMPLE_T,
           "inputs": {"x0": x0, "noise": noise}, "schedules": []}
    post = {"note": note, "shape": list(SHAPE), "timesteps": TIMESTEPS,
            "inputs": {"x0": x0, "x_t": x_t, "eps": eps, "v": v}, "schedules": []}
    for name, recipe in TENSOR_SCHEDULES:
        sched = derived(betas_from_recipe(recipe))
        entry = {"name": name, "recipe": recipe}
        entry.update(forward_cases(sched, x0, noise))
        fwd["schedules"].append(entry)
        entry = {"name": name, "recipe": recipe}
        entry.update(posterior_cases(sched, x0, x_t, eps, v))
        post["schedules"].append(entry)
    sched = derived(betas_from_recipe(linear()))
    tb = np.array(POINTS_T)
    pout, pcoef = lincomb(np.sqrt(sched["alphas_cumprod"][tb]), px0, np.sqrt(1.0 - sched["alphas_cumprod"][tb]),
                          pnoise)
    fwd["points"] = {"recipe": linear(), "shape": list(POINTS_SHAPE), "t": POINTS_T, "x0": px0, "noise": pnoise,
                     "coef": pcoef, "q_sample": pout}
    write("forward.json", fwd)
    write("posterior.json", post)
    return 0


if __name__ == "__main__":
    sys.exit(main())
