#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The ddpm authors
"""Reference values for ddpm's optimisers, gradient clipping, EMA and learning-rate schedules, written to
tests/data/training/optim.json.

- Optimisers: 20 steps of PyTorch's own torch.optim.AdamW / Adam / SGD (PyTorch 1.13, Debian's
  python3-torch, foreach=False) on five parameter tensors of sizes 1, 7, 16, 37 and 54 (below, at and
  around the float packet sizes), in float64 and in float32, with new random gradients at each step. The
  parameters are recorded after steps 1, 2, 5, 10 and 20, the optimiser's state (exp_avg, exp_avg_sq,
  max_exp_avg_sq, momentum_buffer) after step 20. One case changes the learning rate before every step
  (a cosine schedule written into param_groups[0]["lr"]), as a training loop with a scheduler does.
- Clipping: torch.nn.utils.clip_grad_norm_ on the same five tensors, with max_norm below and above the
  total norm; the returned total norm and the gradients after clipping.
- EMA: the decay sequence of diffusers' EMAModel.get_decay, computed here from its formula, for steps
  1..300 and a few large steps, under several option sets; and the shadow weights after 12 steps of
  diffusers' update, shadow.sub_((1 - decay) * (shadow - param)), in torch float64 and float32, with new
  weights at each step.
- Learning-rate schedules: torch.optim.lr_scheduler.LambdaLR driven with the lambdas of diffusers'
  get_constant_schedule(_with_warmup), get_linear_schedule_with_warmup and
  get_cosine_schedule_with_warmup (written here from diffusers' optimization.py), the lr it sets in
  param_groups after 0, 1, 2, ... scheduler steps.

Confirmed once against diffusers' own code (github:huggingface/diffusers at 58eb52c0, 2026-08-23, run
outside the project with --check-diffusers DIR, DIR holding src/diffusers/training_utils.py and
optimization.py): its EMAModel class (loaded from training_utils.py alone) gives bit-identical decays for
every case and bit-identical shadow weights (float64 and float32) for the shadow cases; its four schedule
functions driving LambdaLR give bit-identical learning rates for every schedule case.

Run with Debian's interpreter:   /usr/bin/python3 tests/reference/make_optim_fixtures.py
Deterministic: a fixed seed; numbers are written as the repr of a float64 (a float32 value converts to
float64 exactly).
"""

import argparse
import json
import math
import os
import sys

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "training", "optim.json")
SEED = 20261204
SIZES = [1, 7, 16, 37, 54]
STEPS = 20
RECORD = [1, 2, 5, 10, 20]


def as_list(t):
    return [float(x) for x in t.detach().to(torch.float64).reshape(-1).tolist()]


# --------------------------------------------------------------------------------------------------
# Optimisers


def optimizer_cases():
    return [
        ("AdamW", {}),
        ("AdamW", {"lr": 1e-2, "betas": (0.95, 0.999), "eps": 1e-8, "weight_decay": 1e-6}),
        ("AdamW", {"lr": 3e-3, "weight_decay": 0.0, "amsgrad": True}),
        ("AdamW", {"lr": 1e-3, "betas": (0.5, 0.9), "eps": 1e-3, "weight_decay": 0.1, "amsgrad": True}),
        ("Adam", {}),
        ("Adam", {"lr": 2e-3, "weight_decay": 0.05}),
        ("Adam", {"lr": 1e-3, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.01, "amsgrad": True}),
        ("SGD", {"lr": 0.1}),
        ("SGD", {"lr": 0.05, "momentum": 0.9}),
        ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}),
        ("SGD", {"lr": 0.02, "momentum": 0.8, "nesterov": True, "weight_decay": 0.001}),
        ("AdamW", {"lr": 1e-3, "scheduled": True}),
    ]


def scheduled_lr(base, k):
    # The lr of the (k+1)-th step in the scheduled case: a cosine schedule with 3 warm-up steps over 20.
    return base * cosine_lambda(3, STEPS, 0.5)(k)


def run_optimizer(name, options, params0, grads, dtype):
    options = dict(options)
    scheduled = options.pop("scheduled", False)
    params = [torch.tensor(p, dtype=torch.float64).to(dtype).requires_grad_(True) for p in params0]
    cls = getattr(torch.optim, name)
    opt = cls(params, foreach=False, **options)
    recorded = {}
    for k in range(STEPS):
        for p, g in zip(params, grads[k]):
            p.grad = torch.tensor(g, dtype=torch.float64).to(dtype)
        if scheduled:
            opt.param_groups[0]["lr"] = scheduled_lr(options["lr"], k)
        opt.step()
        if k + 1 in RECORD:
            recorded[str(k + 1)] = [as_list(p) for p in params]
    state = {}
    for p in params:
        for key, value in opt.state[p].items():
            if key == "step" or value is None:
                continue
            state.setdefault(key, []).append(as_list(value))
    return recorded, state


# --------------------------------------------------------------------------------------------------
# Clipping


def run_clip(grads0, max_norm, dtype):
    params = [torch.zeros(len(g), dtype=dtype, requires_grad=True) for g in grads0]
    for p, g in zip(params, grads0):
        p.grad = torch.tensor(g, dtype=torch.float64).to(dtype)
    total = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return float(total), [as_list(p.grad) for p in params]


# --------------------------------------------------------------------------------------------------
# EMA (diffusers EMAModel.get_decay, written from its formula)


def ema_decay(o, optimization_step):
    step = max(0, optimization_step - o["update_after_step"] - 1)
    if step <= 0:
        return 0.0
    if o["use_ema_warmup"]:
        d = 1 - (1 + step / o["inv_gamma"]) ** -o["power"]
    else:
        d = (1 + step) / (10 + step)
    d = min(d, o["decay"])
    d = max(d, o["min_decay"])
    return d


def ema_option_sets():
    base = {"decay": 0.9999, "min_decay": 0.0, "update_after_step": 0, "use_ema_warmup": False,
            "inv_gamma": 1.0, "power": 2 / 3}
    sets = [dict(base)]
    sets.append(dict(base, use_ema_warmup=True))
    sets.append(dict(base, use_ema_warmup=True, power=3 / 4, update_after_step=5))
    sets.append(dict(base, decay=0.999, use_ema_warmup=True, inv_gamma=1.0, power=2 / 3))  # the digits baseline
    sets.append(dict(base, decay=0.995, min_decay=0.5, use_ema_warmup=True, inv_gamma=10.0, power=1.0))
    sets.append(dict(base, decay=0.9, min_decay=0.2, update_after_step=3))
    return sets


EMA_STEPS = list(range(1, 301)) + [1000, 31623, 215444, 1000000, 10000000]
SHADOW_STEPS = 12


def run_ema_shadow(o, weights, dtype):
    # weights[k]: the parameter values after optimiser step k; the shadow starts as a copy of weights[0].
    shadow = [torch.tensor(w, dtype=torch.float64).to(dtype) for w in weights[0]]
    for k in range(1, SHADOW_STEPS + 1):
        one_minus_decay = 1 - ema_decay(o, k)
        for s, w in zip(shadow, weights[k]):
            p = torch.tensor(w, dtype=torch.float64).to(dtype)
            s.sub_(one_minus_decay * (s - p))
    return [as_list(s) for s in shadow]


# --------------------------------------------------------------------------------------------------
# Learning-rate schedules (the lambdas of diffusers' optimization.py, written here)


def constant_lambda():
    return lambda _: 1


def constant_warmup_lambda(w):
    def f(step):
        if step < w:
            return float(step) / float(max(1.0, w))
        return 1.0
    return f


def linear_lambda(w, n, f_min=0.0, f_max=1.0):
    def f(step):
        if step < w:
            return f_max * float(step) / float(max(1, w))
        progress = float(n - step) / float(max(1, n - w))
        return f_min + (f_max - f_min) * max(0.0, progress)
    return f


def cosine_lambda(w, n, cycles=0.5):
    def f(step):
        if step < w:
            return float(step) / float(max(1, w))
        progress = float(step - w) / float(max(1, n - w))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(cycles) * 2.0 * progress)))
    return f


def schedule_cases():
    return [
        {"kind": "constant", "base_lr": 1e-4},
        {"kind": "constant_with_warmup", "base_lr": 1e-3, "warmup": 10},
        {"kind": "constant_with_warmup", "base_lr": 2e-4, "warmup": 0},
        {"kind": "linear", "base_lr": 1e-3, "warmup": 10, "training": 50},
        {"kind": "linear", "base_lr": 3e-4, "warmup": 7, "training": 40, "f_min": 0.1, "f_max": 0.9},
        {"kind": "linear", "base_lr": 1e-3, "warmup": 0, "training": 33},
        {"kind": "cosine", "base_lr": 1e-4, "warmup": 10, "training": 50},
        {"kind": "cosine", "base_lr": 1e-3, "warmup": 5, "training": 45, "num_cycles": 1.0},
        {"kind": "cosine", "base_lr": 5e-4, "warmup": 0, "training": 37, "num_cycles": 0.3},
        {"kind": "cosine", "base_lr": 1e-4, "warmup": 500, "training": 3000},
    ]


def schedule_lambda(c):
    if c["kind"] == "constant":
        return constant_lambda()
    if c["kind"] == "constant_with_warmup":
        return constant_warmup_lambda(c["warmup"])
    if c["kind"] == "linear":
        return linear_lambda(c["warmup"], c["training"], c.get("f_min", 0.0), c.get("f_max", 1.0))
    return cosine_lambda(c["warmup"], c["training"], c.get("num_cycles", 0.5))


def schedule_length(c):
    return c.get("training", 60) + 15


def run_schedule(c, make_scheduler):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=c["base_lr"])
    sched = make_scheduler(opt)
    lrs = []
    for _ in range(schedule_length(c)):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


# --------------------------------------------------------------------------------------------------


def build():
    rng = np.random.default_rng(SEED)
    params0 = [rng.standard_normal(n).tolist() for n in SIZES]
    # Gradients of varied scale per tensor and step, some elements exactly 0.
    grads = []
    for _ in range(STEPS):
        step = []
        for n in SIZES:
            g = rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 1)
            g[rng.random(n) < 0.05] = 0.0
            step.append(g.tolist())
        grads.append(step)
    out = {"sizes": SIZES, "params0": params0, "grads": grads, "record": RECORD, "optimizers": []}
    for name, options in optimizer_cases():
        for dtype in (torch.float64, torch.float32):
            recorded, state = run_optimizer(name, options, params0, grads, dtype)
            opts = {k: (list(v) if isinstance(v, tuple) else v) for k, v in options.items()}
            out["optimizers"].append({"optimizer": name, "options": opts,
                                      "dtype": "float64" if dtype == torch.float64 else "float32",
                                      "params": recorded, "state": state})
    out["scheduled_lr"] = [scheduled_lr(1e-3, k) for k in range(STEPS)]

    out["clip"] = []
    total = math.sqrt(sum(float(np.sum(np.square(g))) for g in grads[0]))
    for max_norm in (0.5 * total, 0.01 * total, 2.0 * total, 1.0):
        for dtype in (torch.float64, torch.float32):
            norm, clipped = run_clip(grads[0], max_norm, dtype)
            out["clip"].append({"max_norm": max_norm, "dtype": "float64" if dtype == torch.float64 else "float32",
                                "total_norm": norm, "grads": clipped})

    weights = [params0] + [[(np.array(p) + 0.1 * rng.standard_normal(len(p))).tolist() for p in params0]
                           for _ in range(SHADOW_STEPS)]
    out["ema"] = {"steps": EMA_STEPS, "cases": [], "weights": weights}
    for o in ema_option_sets():
        case = {"options": o, "decays": [ema_decay(o, s) for s in EMA_STEPS],
                "shadow_float64": run_ema_shadow(o, weights, torch.float64),
                "shadow_float32": run_ema_shadow(o, weights, torch.float32)}
        out["ema"]["cases"].append(case)

    out["schedules"] = []
    for c in schedule_cases():
        lam = schedule_lambda(c)
        lrs = run_schedule(c, lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lam))
        out["schedules"].append(dict(c, lrs=lrs))
    return out


def check_diffusers(root, out):
    """Compares the EMA and schedule fixtures with diffusers' own EMAModel and schedule functions."""
    import types
    src = os.path.join(root, "src", "diffusers")
    # EMAModel alone: its module's imports are diffusers-internal, so provide the few names it uses.
    text = open(os.path.join(src, "training_utils.py")).read()
    start = text.index("class EMAModel")
    end = text.index("\nclass ", start + 10) if "\nclass " in text[start + 10:] else len(text)
    end2 = text.find("\ndef ", start)
    if end2 != -1:
        end = min(end, end2)
    ns = {"torch": torch, "contextlib": __import__("contextlib"), "copy": __import__("copy"),
          "Iterable": __import__("typing").Iterable, "Any": __import__("typing").Any,
          "deprecate": lambda *a, **k: None, "is_transformers_available": lambda: False}
    exec("from __future__ import annotations\n" + text[start:end], ns)
    EMAModel = ns["EMAModel"]
    worst = 0
    for case in out["ema"]["cases"]:
        o = case["options"]
        for dtype, key in ((torch.float64, "shadow_float64"), (torch.float32, "shadow_float32")):
            params = [torch.nn.Parameter(torch.tensor(w, dtype=torch.float64).to(dtype)) for w in out["ema"]["weights"][0]]
            ema = EMAModel(params, decay=o["decay"], min_decay=o["min_decay"], update_after_step=o["update_after_step"],
                           use_ema_warmup=o["use_ema_warmup"], inv_gamma=o["inv_gamma"], power=o["power"])
            decays = [ema.get_decay(s) for s in out["ema"]["steps"]]
            assert decays == case["decays"], "EMA decays differ from diffusers"
            for k in range(1, SHADOW_STEPS + 1):
                with torch.no_grad():
                    for p, w in zip(params, out["ema"]["weights"][k]):
                        p.copy_(torch.tensor(w, dtype=torch.float64).to(dtype))
                ema.step(params)
            got = [as_list(s) for s in ema.shadow_params]
            assert got == case[key], "EMA shadow differs from diffusers (%s)" % key
    # The schedules: diffusers' optimization.py needs only torch and its own logging; load it with a stub.
    text = open(os.path.join(src, "optimization.py")).read()
    text = text.replace("from .utils import logging", "")
    ns = {"__name__": "optimization_check"}
    fake_logging = types.SimpleNamespace(get_logger=lambda name: types.SimpleNamespace(warning=print, info=print))
    code = "from __future__ import annotations\n" + text
    ns["logging"] = fake_logging
    exec(compile(code, "optimization.py", "exec"), ns)
    for c in out["schedules"]:
        if c["kind"] == "constant":
            make = lambda opt: ns["get_constant_schedule"](opt)
        elif c["kind"] == "constant_with_warmup":
            make = lambda opt: ns["get_constant_schedule_with_warmup"](opt, c["warmup"])
        elif c["kind"] == "linear":
            kw = {k: c[k] for k in ("f_min", "f_max") if k in c}
            make = lambda opt: ns["get_linear_schedule_with_warmup"](opt, c["warmup"], c["training"], **kw)
        else:
            make = lambda opt: ns["get_cosine_schedule_with_warmup"](opt, c["warmup"], c["training"],
                                                                    c.get("num_cycles", 0.5))
        assert run_schedule(c, make) == c["lrs"], "schedule %s differs from diffusers" % c
    print("diffusers check: EMA decays, EMA shadows and schedules are bit-identical")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check-diffusers", metavar="DIR", help="a diffusers checkout to confirm against")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = build()
    if args.check_diffusers:
        check_diffusers(args.check_diffusers, out)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    sys.exit(main())
