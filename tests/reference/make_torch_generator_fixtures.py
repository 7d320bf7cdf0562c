#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The ddpm authors
"""PyTorch's own CPU random numbers, for tests/core/torch_random.test.cpp (ddpm/torch_random.hpp).

Runs PyTorch itself (Debian's python3-torch; the version and the CPU kernel it dispatched to are written into
the fixture) and records, bit for bit, what torch.randn / torch.rand return:

  randn         torch.Generator().manual_seed(s) then one torch.randn(n, dtype=d), for the seeds 0, 42,
                2^32 + 5 (PyTorch seeds its mt19937 with the low 32 bits) and a 64-bit seed, n in 1, 7, 15
                (the scalar path), 16, 17, 31, 100, 1000 (the vectorised path, with and without a tail), in
                float32 and float64;
  consecutive   one generator and a run of calls of mixed sizes and dtypes (the normal the scalar path keeps
                for its next call, the vectorised path's tail that draws 16 more uniforms);
  rand          torch.rand(n, dtype=d) (the uniforms the normals are made from);
  generators    diffusers' randn_tensor(shape, generator=[...]) over a list of generators (one per image; the
                semantics of diffusers/utils/torch_utils.py at 58eb52c0, written out below) and with one
                generator for the batch;
  libm          float32 vectorised-path draws computed by PyTorch's non-AVX2 kernel (a child process run with
                ATEN_CPU_CAPABILITY=default), i.e. with the C library's logf / cosf / sinf.

Every number is stored as the hexadecimal bit pattern of its IEEE value (8 digits for float32, 16 for
float64), the values of one draw concatenated into one string, so the C++ test compares bits, not decimals.
The script also asserts that torch.manual_seed(s) + torch.randn(...) (the global generator) gives the same
numbers as a torch.Generator, so the fixture stands for both.

End to end (tests/data/core/torch_generator_e2e.safetensors, for tests/nn/torch_random_e2e.test.cpp): the tiny
UNet of tests/data/unet/tiny, run by the PyTorch reference model of make_unet_fixture.py, sampled by a
diffusers-style DDPM loop (DDPMScheduler.step with variance_type "fixed_small", clip_sample False) and DDIM loop
(DDIMScheduler.step with eta 0.5, set_alpha_to_one, clip_sample False), 10 leading-spaced steps of a linear
schedule (1e-4 .. 0.02, T = 1000, computed in float64), in float32 and in float64, with noise from
randn_tensor exactly as the pipelines draw it (x_T first, then a draw per step where the scheduler makes one:
DDPM for t > 0, DDIM at every step when eta > 0), with one generator (seed 0) for a batch of two and with a
list of two generators (seeds 5 and 7). It stores the final images (and those of the float64 loop fed the
float32 noise: their distance from the float32 images is the float32 rounding of this pipeline) and, for each run, the next
torch.randn(4, dtype=float64) of the (first) generator after the loop, which shows how many numbers the loop drew.

    /usr/bin/python3 tests/reference/make_torch_generator_fixtures.py   # writes both files

The loops are written from diffusers' step formulas. `--diffusers CHECKOUT` (a huggingface/diffusers work tree
outside the project; nothing of it is committed) runs diffusers' own DDPMScheduler, DDIMScheduler and randn_tensor
instead and prints the distance; writes nothing. Confirmed against diffusers 0.40.0.dev0 (58eb52c0, 2026-08-23):
the generator ends every run in the same state (the same number of draws, DDIM's draw at the last step included);
the images differ by 0.9e-4 to 1.5e-4 in float32 (float32 rounding, about the D of the C++ test) and by 3e-6 to
2e-5 in float64 (diffusers keeps its schedule in float32), on values up to about 370.

    /usr/bin/python3 tests/reference/make_torch_generator_fixtures.py --diffusers /path/to/diffusers
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "core", "torch_generator.json")
OUT_E2E = os.path.join(HERE, "..", "data", "core", "torch_generator_e2e.safetensors")
UNET_DIR = os.path.join(HERE, "..", "data", "unet", "tiny")

SEEDS = [0, 42, 2**32 + 5, 0x9E3779B97F4A7C15]
SIZES = [1, 7, 15, 16, 17, 31, 100, 1000]
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def hex_of(t):
    a = t.detach().contiguous().numpy().ravel()
    if a.dtype == np.float32:
        return "".join("%08x" % v for v in a.view(np.uint32))
    if a.dtype == np.float64:
        return "".join("%016x" % v for v in a.view(np.uint64))
    raise TypeError(a.dtype)


def cpu_capability():
    # torch 1.13 has no torch.backends.cpu.get_cpu_capability(); the build summary names the kernel in use.
    for line in torch.__config__.show().splitlines():
        if "CPU capability usage" in line:
            return line.split(":", 1)[1].strip()
    return "unknown"


def debian_torch_package():
    # torch.__version__ of Debian's build reads "1.13.0a0"; the package version says which release it is.
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "python3-torch"], capture_output=True, text=True)
        return "python3-torch " + out.stdout.strip() if out.returncode == 0 else "unknown"
    except OSError:
        return "unknown"


def randn_tensor(shape, generator, dtype):
    """diffusers.utils.torch_utils.randn_tensor on the CPU: a list of generators draws one image per
    generator, torch.randn((1,) + shape[1:]) each, concatenated along dimension 0; a list of one generator
    counts as that generator; one generator draws the whole shape at once."""
    if isinstance(generator, list) and len(generator) == 1:
        generator = generator[0]
    if isinstance(generator, list):
        one = (1,) + tuple(shape[1:])
        return torch.cat([torch.randn(one, generator=generator[i], dtype=dtype) for i in range(shape[0])], dim=0)
    return torch.randn(shape, generator=generator, dtype=dtype)


def libm_child():
    """Runs under ATEN_CPU_CAPABILITY=default: float32 draws of the non-AVX2 kernel, printed as JSON."""
    out = {"cpu_capability": cpu_capability(), "cases": []}
    for seed in (0, 42):
        for n in (16, 17, 100):
            g = torch.Generator().manual_seed(seed)
            out["cases"].append({"seed": seed, "n": n, "bits": hex_of(torch.randn(n, generator=g, dtype=torch.float32))})
    print(json.dumps(out))


def main():
    fixture = {
        "torch_version": torch.__version__,
        "debian_package": debian_torch_package(),
        "cpu_capability": cpu_capability(),
        "note": "written by tests/reference/make_torch_generator_fixtures.py with Debian's python3-torch",
    }

    randn = []
    for seed in SEEDS:
        for dname, dtype in DTYPES.items():
            for n in SIZES:
                g = torch.Generator().manual_seed(seed)
                x = torch.randn(n, generator=g, dtype=dtype)
                torch.manual_seed(seed)
                assert torch.equal(x, torch.randn(n, dtype=dtype)), "global generator differs"
                randn.append({"seed": str(seed), "dtype": dname, "n": n, "bits": hex_of(x)})
    fixture["randn"] = randn

    # Seeds in the JSON are decimal strings: a 64-bit seed does not survive a double.
    calls = [(7, "float32"), (16, "float32"), (1, "float64"), (17, "float32"), (3, "float64"), (100, "float64"),
             (5, "float32"), (33, "float32"), (2, "float64"), (15, "float64")]
    g = torch.Generator().manual_seed(1234)
    consecutive = []
    for n, dname in calls:
        consecutive.append({"dtype": dname, "n": n, "bits": hex_of(torch.randn(n, generator=g, dtype=DTYPES[dname]))})
    # manual_seed in the middle of a run forgets the kept normal (the 7 above leaves one).
    g.manual_seed(99)
    torch.randn(3, generator=g)
    g.manual_seed(99)
    after_reseed = hex_of(torch.randn(4, generator=g, dtype=torch.float64))
    fixture["consecutive"] = {"seed": "1234", "calls": consecutive,
                              "reseed": {"seed": "99", "n": 4, "dtype": "float64", "bits": after_reseed}}

    rand = []
    for dname, dtype in DTYPES.items():
        g = torch.Generator().manual_seed(7)
        rand.append({"seed": "7", "dtype": dname, "n": 40, "bits": hex_of(torch.rand(40, generator=g, dtype=dtype))})
    fixture["rand"] = rand

    generators = []
    for shape in ([3, 1, 2, 2], [3, 2, 4, 4], [2, 3, 5, 5]):
        seeds = [3, 1, 4][: shape[0]]
        for dname, dtype in DTYPES.items():
            gens = [torch.Generator().manual_seed(s) for s in seeds]
            first = randn_tensor(tuple(shape), gens, dtype)
            second = randn_tensor(tuple(shape), gens, dtype)  # each generator continues its own stream
            one = randn_tensor(tuple(shape), torch.Generator().manual_seed(seeds[0]), dtype)
            generators.append({"shape": shape, "seeds": [str(s) for s in seeds], "dtype": dname,
                               "list_first": hex_of(first), "list_second": hex_of(second), "one": hex_of(one)})
    fixture["generators"] = generators

    env = dict(os.environ, ATEN_CPU_CAPABILITY="default")
    child = subprocess.run([sys.executable, os.path.abspath(__file__), "--libm-child"], env=env, check=True,
                           capture_output=True, text=True)
    fixture["libm"] = json.loads(child.stdout)

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    print("wrote", os.path.relpath(OUT), "torch", torch.__version__, fixture["cpu_capability"],
          "libm child:", fixture["libm"]["cpu_capability"])


# ----------------------------------------------------------------------------------------------------------
# End to end: diffusers-style DDPM and DDIM loops over the tiny UNet


E2E_T, E2E_STEPS, E2E_ETA, E2E_BATCH = 1000, 10, 0.5, 2


def e2e_schedule():
    betas = np.linspace(1e-4, 0.02, E2E_T, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def e2e_timesteps():
    # diffusers' "leading" spacing with steps_offset 0: 900, 800, ..., 0
    stride = E2E_T // E2E_STEPS
    return [i * stride for i in range(E2E_STEPS)][::-1]


def run_loop(kind, model, generator, dtype, noise_dtype=None):
    """The loop in `dtype`; noise drawn in noise_dtype (default: dtype, as a pipeline does) and cast to dtype."""
    alpha_bar = e2e_schedule()
    ts = e2e_timesteps()
    shape = (E2E_BATCH, 3, 16, 16)
    noise_dtype = noise_dtype or dtype

    def draw():
        return randn_tensor(shape, generator, noise_dtype).to(dtype)

    x = draw()
    with torch.no_grad():
        for i, t in enumerate(ts):
            eps = model(x, torch.full((E2E_BATCH,), t, dtype=torch.int64))
            a = float(alpha_bar[t])
            a_prev = float(alpha_bar[ts[i + 1]]) if i + 1 < len(ts) else 1.0  # t - T / N, or "one" after t = 0
            x0 = (x - math.sqrt(1.0 - a) * eps) / math.sqrt(a)
            if kind == "ddpm":
                # DDPMScheduler.step: posterior mean, then std * noise drawn for t > 0 ("fixed_small", clamped)
                beta_t = 1.0 - a / a_prev
                x = (math.sqrt(a_prev) * beta_t / (1.0 - a)) * x0 + (math.sqrt(a / a_prev) * (1.0 - a_prev) / (1.0 - a)) * x
                if t > 0:
                    z = draw()
                    x = x + math.sqrt(max((1.0 - a_prev) / (1.0 - a) * beta_t, 1e-20)) * z
            else:
                # DDIMScheduler.step: sigma from eta, the direction to x_t, and noise drawn whenever eta > 0
                sigma = E2E_ETA * math.sqrt((1.0 - a_prev) / (1.0 - a) * (1.0 - a / a_prev))
                x = math.sqrt(a_prev) * x0 + math.sqrt(1.0 - a_prev - sigma * sigma) * eps
                if E2E_ETA > 0:
                    z = draw()
                    x = x + sigma * z
    first = generator[0] if isinstance(generator, list) else generator
    after = hex_of(torch.randn(4, generator=first, dtype=torch.float64))
    return x, after


def e2e():
    from make_unet_fixture import write_safetensors
    from make_unet_grad_fixture import load_model_dir
    import copy

    model64, _, _ = load_model_dir(UNET_DIR)
    model32 = copy.deepcopy(model64).float()  # the weights are exact in float32 (make_unet_fixture.py)
    tensors, dtypes, meta = {}, {}, {}
    for kind in ("ddpm", "ddim"):
        for mode in ("one", "list"):
            # f32 and f64 as a pipeline runs them; f64_f32noise is the float64 loop fed the float32 run's noise, so
            # that |f32 - f64_f32noise| shows how far float32 rounding moves this pipeline's result.
            for dname, dtype, model, noise in (("f32", torch.float32, model32, None), ("f64", torch.float64, model64, None),
                                               ("f64_f32noise", torch.float64, model64, torch.float32)):
                gen = (torch.Generator().manual_seed(0) if mode == "one"
                       else [torch.Generator().manual_seed(5), torch.Generator().manual_seed(7)])
                x, after = run_loop(kind, model, gen, dtype, noise)
                name = "%s_%s_%s" % (kind, mode, dname)
                tensors[name] = x
                dtypes[name] = "F32" if dname == "f32" else "F64"
                if noise is None:
                    meta["after_" + name] = after
    meta.update({"torch_version": torch.__version__, "debian_package": debian_torch_package(),
                 "steps": str(E2E_STEPS), "eta": str(E2E_ETA), "seed_one": "0", "seeds_list": "5,7",
                 "schedule": "linear 1e-4 0.02 T=1000", "spacing": "leading"})
    write_safetensors(OUT_E2E, tensors, lambda n: dtypes[n], meta)
    for kind in ("ddpm", "ddim"):
        for mode in ("one", "list"):
            d = (tensors["%s_%s_f32" % (kind, mode)].double() - tensors["%s_%s_f64_f32noise" % (kind, mode)]).abs().max()
            big = tensors["%s_%s_f64" % (kind, mode)].abs().max()
            print("e2e %s/%s: max |x| %.3g, max |float32 - float64| with the same noise %.3g" % (kind, mode, big, d))
    print("wrote", os.path.relpath(OUT_E2E))


def check_diffusers(root):
    """Runs diffusers' own DDPMScheduler / DDIMScheduler and randn_tensor (a checkout at ROOT, imported as
    make_unet_grad_fixture.import_diffusers_unet does under Debian's packages) over the same model, seeds and
    settings as e2e(), and prints how far their final images and generator states are from run_loop's. Writes
    nothing. diffusers keeps its schedule in float32, so the float64 images differ by float32-schedule rounding."""
    import copy
    from make_unet_grad_fixture import import_diffusers_unet, load_model_dir

    import_diffusers_unet(root)
    from diffusers.schedulers.scheduling_ddim import DDIMScheduler
    from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
    from diffusers.utils.torch_utils import randn_tensor as diffusers_randn_tensor

    model64, _, _ = load_model_dir(UNET_DIR)
    models = {torch.float32: copy.deepcopy(model64).float(), torch.float64: model64}
    common = dict(num_train_timesteps=E2E_T, beta_start=1e-4, beta_end=0.02, beta_schedule="linear", clip_sample=False)
    for kind in ("ddpm", "ddim"):
        for mode in ("one", "list"):
            for dtype in (torch.float32, torch.float64):
                def gen():
                    return (torch.Generator().manual_seed(0) if mode == "one"
                            else [torch.Generator().manual_seed(5), torch.Generator().manual_seed(7)])
                ours, ours_after = run_loop(kind, models[dtype], gen(), dtype)
                g = gen()
                if kind == "ddpm":
                    sched = DDPMScheduler(variance_type="fixed_small", **common)
                else:
                    sched = DDIMScheduler(set_alpha_to_one=True, **common)
                sched.set_timesteps(E2E_STEPS)
                assert [int(t) for t in sched.timesteps] == e2e_timesteps()
                x = diffusers_randn_tensor((E2E_BATCH, 3, 16, 16), generator=g, dtype=dtype)
                with torch.no_grad():
                    for t in sched.timesteps:
                        eps = models[dtype](x, torch.full((E2E_BATCH,), int(t), dtype=torch.int64))
                        extra = {"eta": E2E_ETA} if kind == "ddim" else {}
                        x = sched.step(eps, t, x, generator=g, **extra).prev_sample
                first = g[0] if isinstance(g, list) else g
                after = hex_of(torch.randn(4, generator=first, dtype=torch.float64))
                print("diffusers %s/%s %s: max |diffusers - run_loop| %.3g (max |x| %.3g), generator after the run %s"
                      % (kind, mode, str(dtype).split(".")[1], (x.double() - ours.double()).abs().max(),
                         ours.abs().max(), "the same" if after == ours_after else "DIFFERS"))


if __name__ == "__main__":
    if "--libm-child" in sys.argv:
        libm_child()
    elif "--diffusers" in sys.argv:
        check_diffusers(sys.argv[sys.argv.index("--diffusers") + 1])
    else:
        main()
        e2e()
