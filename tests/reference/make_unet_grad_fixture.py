#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The ddpm authors
"""PyTorch-autograd fixtures for the UNet2D backward pass and for ten AdamW steps.

    /usr/bin/python3 tests/reference/make_unet_grad_fixture.py [--data tests/data/unet] [--only NAME ...]
                                                               [--kinds f64 f32 adamw]

reads the committed model directories (config.json + diffusion_pytorch_model.safetensors, written by
make_unet_fixture.py, whose UNet2DModel it imports) and writes beside them:

reference_grads.safetensors (float64, for tiny, tiny_legacy, tiny_class and tiny_identity): the model and the
inputs in double (model.double(), eval mode, so dropout is off), the simple loss L = mean((out - eps)^2) over
every element (F.mse_loss) and loss.backward():
    "sample" [N,C,H,W]          x_t (drawn in float32 and stored as F32, exact; the computation is in float64)
    "timesteps" [N]             one timestep per image, all different (integers as float64)
    "class_labels" [N]          (tiny_class) distinct labels in 0..9 (integers as float64), or
    "class_labels" [N,T]        (tiny_identity, class_embed_type "identity") the class embedding added to the
                                time embedding, unit normal, drawn in float32 and stored as F32
    "eps" [N,C,H,W]             the target noise (drawn in float32 and stored as F32, like "sample")
    "output" [N,C,H,W]          the model's output
    "loss" [1]                  L
    "grad.sample" [N,C,H,W]     dL/dx_t
    "grad.class_labels" [N,T]   (tiny_identity) dL/d class embedding
    "grad.<name>"               dL/dparam for every tensor of the checkpoint, under the checkpoint's own name and
                                shape (tiny_legacy keeps its query/key/value/proj_attn names)
reference_grads_f32.safetensors: the same names with everything computed in float32 (same inputs and weights).

reference_adamw.safetensors (float64, for tiny and tiny_class): from the committed weights, ten steps of
torch.optim.AdamW(lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 1e-2; torch 1.13's single-tensor
algorithm: p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
p -= lr/(1-b1^k) * m / (sqrt(v)/sqrt(1-b2^k) + eps)) on the simple loss, each step with its own batch:
    "step_<k>.sample", "step_<k>.timesteps", "step_<k>.eps" (and "step_<k>.class_labels"), k = 0..9
    "loss" [10]                 the loss of step k at the parameters before step k
    "final.<name>"              every parameter after the ten steps (checkpoint names)
The batches are 2 images of 8x8 (sample and eps drawn in float32 and stored as F32; labels drawn with repeats
allowed) to keep each file under 1.5 MB.

The timestep embedding. The reference computes it as diffusers does, in float32 also for a float64 model, with
one difference that matters only below float32 rounding: exp, sin and cos of diffusers' float32 arguments are
correctly rounded (evaluated in float64, rounded once; make_unet_fixture.timestep_embedding), as ddpm's
sinusoidal_embedding_into computes them. PyTorch's float32 exp/sin/cos are faithful, not correctly rounded, and
the C library's differ from them elsewhere; with those, the float64 C++/PyTorch comparison was limited to 1e-8 to
4e-7 of the largest output by one-ulp differences of the embedding. With the correctly rounded embedding both
sides compute the same bits, and the float64 passes differ by double rounding only: ddpm's gradients agree with
these files to 2e-14 of the largest, its ten AdamW steps to 1.0e-10 of each tensor's largest value (the to_k.bias
tensors, whose rounding-noise gradients AdamW turns into steps of lr * g / (|g| + 1e-8)).
The float64 files (reference_grads, reference_adamw) of tiny, tiny_legacy and tiny_class were rewritten for this
(--kinds f64 adamw); their float32 files (reference_grads_f32) were not: they were written with PyTorch's own
float32 embedding (diffusers' exactly), and a rerun differs from them by float32 rounding only (outputs 8e-7 to
1.2e-6 of the largest, parameter gradients 2e-7 to 1.9e-6), far inside the 1e-4 the float32 test allows.
tiny_identity's files were all written with the correctly rounded embedding.

Each model's inputs come from their own torch.Generator (seeds below), so the files do not depend on each other;
rerunning reproduces every file but those three float32 ones bit for bit (here, with one thread).

What a C++ test compares: outputs, loss and every gradient of the float64 file within 1e-9 relative to the largest
|value| of that tensor kind (the largest parameter gradient for the grad.<name> tensors, not each element's own:
the to_k.bias gradients are zero but for rounding, below 3e-17 here, since a key bias shifts all scores of a query
alike); the float32 file within 1e-4 of the largest gradient (PyTorch's own float32 gradients are within 3e-6
of its float64 ones); the AdamW losses and final parameters within 1e-9 relative (double).

Confirmed against diffusers' own UNet2DModel (huggingface/diffusers 58eb52c, 0.40.0.dev0, run with
--check-diffusers DIR on a checkout outside the project, e.g. `git --git-dir=<mirror> worktree add
/work/ext/diffusers`; nothing of it is committed), same state_dict. Last run:
- the embedding alone, diffusers' float32 get_timestep_embedding against ours over t in [0, 999] (integers and
  fractions), dims 8-128: 136,764 of 1,104,000 entries differ, all within 3.22 x 2^-24 (|t freq| + |value|), the
  float32 rounding of the argument and of the value (at most 3.1e-5 absolute, where a one-ulp frequency times
  t ~ 1000 shifts the argument of a sine near zero);
- with diffusers' time_proj computing the correctly rounded embedding: the float64 fixtures (outputs, loss,
  grad.sample, grad.class_labels, every parameter gradient) and reference_io output_f64 within 6.3e-15 of
  diffusers with its softmax upcast off (with it on, diffusers' float64 model runs the softmax in float32 and
  differs by 1e-7); ten AdamW steps on diffusers' model reproduce the losses to 6e-16 and the final parameters to
  2.1e-11 of the largest (AdamW turns the rounding noise of the zero to_k.bias gradients into steps
  lr * g / (|g| + 1e-8));
- with diffusers' own float32 embedding: float64 outputs within 1.3e-9 (tiny), 3.7e-7 (tiny_legacy), 2.4e-8
  (tiny_class), 1.7e-9 (tiny_identity), i.e. within what one float32 ulp of the embedding makes; the float32
  fixtures within 4e-6 of diffusers in float32 (outputs 1.2e-6, parameter gradients 1.4e-6);
- class_embed_type "timestep" and "identity" (random weights) within 5.7e-7 (float32) and 2.3e-15 (float64;
  diffusers' "timestep" raises "mat1 and mat2 must have the same dtype" in a float64 model, so its projection is
  cast there as ours is); tiny_identity's grad.class_labels within 2e-15; dropout 0.3 in train mode with the same
  torch seed gives the same outputs and gradients (4e-15), so every Dropout is where diffusers has it; missing
  labels and labels for a model without a class embedding raise ValueError in both.

    /usr/bin/python3 tests/reference/make_unet_grad_fixture.py --check-diffusers /work/ext/diffusers
"""
import argparse
import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

from make_unet_fixture import LEGACY_NAMES, UNet2DModel, representable_weights, timestep_embedding, write_safetensors

DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I64": np.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        data = np.frombuffer(raw[8 + n + begin:8 + n + end], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        out[name] = torch.from_numpy(data.astype(np.float64) if info["dtype"] != "I64" else data.copy())
    return out


def load_model_dir(path):
    """UNet2DModel (float64) with the directory's weights, and {parameter name: checkpoint name}."""
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    model = UNet2DModel(config).double().eval()
    state = read_safetensors(os.path.join(path, "diffusion_pytorch_model.safetensors"))
    to_file = {}
    for name in model.state_dict():
        file_name = name
        if file_name not in state:
            for new, old in LEGACY_NAMES.items():
                file_name = file_name.replace(new, old)
        to_file[name] = file_name
    model.load_state_dict({name: state[to_file[name]] for name in to_file})
    return model, config, to_file


# drawn in float32 and stored as F32 in every file (float64 holds them exactly; the C++ reader converts)
FLOAT32_DRAWN = ("sample", "eps")


def draw_distinct(high, n, generator):
    while True:
        v = torch.randint(0, high, (n,), generator=generator)
        if len(set(v.tolist())) == n:
            return v


def is_identity(config):
    return config.get("class_embed_type") == "identity"


def draw_batch(config, generator, batch, size, distinct_labels=True):
    """x_t and eps in float32, distinct timesteps, labels if the model has a table (distinct if asked), or the
    class embedding [batch, time_embed_dim] in float32 (unit normal) for class_embed_type "identity"."""
    shape = (batch, config["in_channels"], size, size)
    sample = torch.randn(shape, generator=generator)
    eps = torch.randn(shape, generator=generator)
    t = draw_distinct(1000, batch, generator)
    labels = None
    if config.get("num_class_embeds") is not None and config.get("class_embed_type") is None:
        n = config["num_class_embeds"]
        labels = draw_distinct(n, batch, generator) if distinct_labels else \
            torch.randint(0, n, (batch,), generator=generator)
    elif is_identity(config):
        temb = config.get("time_embedding_dim") or 4 * config["block_out_channels"][0]
        labels = torch.randn((batch, temb), generator=generator)
    return sample, t, labels, eps


def loss_and_grads(model, sample, t, labels, eps):
    """Output, loss, dL/dx and (for float labels: the identity class embedding) dL/dlabels."""
    model.zero_grad(set_to_none=True)
    x = sample.clone().requires_grad_(True)
    if labels is not None and labels.is_floating_point():
        labels = labels.clone().requires_grad_(True)
    out = model(x, t, labels)
    loss = F.mse_loss(out, eps)
    loss.backward()
    grad_labels = labels.grad.detach() if labels is not None and labels.requires_grad else None
    return out.detach(), loss.detach(), x.grad.detach(), grad_labels


def write_grads(path, model, to_file, dtype, sample, t, labels, eps):
    model = model.to(dtype)
    float_labels = labels is not None and labels.is_floating_point()
    out, loss, grad_x, grad_labels = loss_and_grads(model, sample.to(dtype), t,
                                                    labels.to(dtype) if float_labels else labels, eps.to(dtype))
    tensors = {"sample": sample, "timesteps": t.double(), "eps": eps, "output": out, "loss": loss.reshape(1),
               "grad.sample": grad_x}
    if labels is not None:
        tensors["class_labels"] = labels if float_labels else labels.double()
    if grad_labels is not None:
        tensors["grad.class_labels"] = grad_labels
    for name, p in model.named_parameters():
        tensors["grad." + to_file[name]] = p.grad
    tag = "F64" if dtype == torch.float64 else "F32"
    float32 = FLOAT32_DRAWN + (("class_labels",) if float_labels else ())
    write_safetensors(path, tensors, lambda name: "F32" if name in float32 else tag)
    largest = max(p.grad.abs().max().item() for p in model.parameters())
    print(f"{os.path.normpath(path)}: loss {loss.item():.6f}, largest |grad| {largest:.4f}, "
          f"{os.path.getsize(path)} bytes")
    return tensors


def write_adamw(path, model, to_file, config, generator, steps=10, batch=2, size=8):
    model = model.double()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                            foreach=False)
    tensors, losses = {}, []
    for k in range(steps):
        sample, t, labels, eps = draw_batch(config, generator, batch, size, distinct_labels=False)
        tensors[f"step_{k}.sample"] = sample
        tensors[f"step_{k}.timesteps"] = t.double()
        tensors[f"step_{k}.eps"] = eps
        if labels is not None:
            tensors[f"step_{k}.class_labels"] = labels.double()
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(sample.double(), t, labels), eps.double())
        loss.backward()
        opt.step()
        losses.append(loss.item())
    tensors["loss"] = torch.tensor(losses, dtype=torch.float64)
    for name, p in model.named_parameters():
        tensors["final." + to_file[name]] = p.detach()
    write_safetensors(path, tensors, lambda name: "F32" if name.split(".")[-1] in FLOAT32_DRAWN else "F64")
    print(f"{os.path.normpath(path)}: losses {' '.join(f'{v:.5f}' for v in losses)}, {os.path.getsize(path)} bytes")


# ----------------------------------------------------------------------------------------------------------
# The one-off confirmation against diffusers' own UNet2DModel (run outside the project; nothing of it is committed)

def import_diffusers_unet(root, overrides=None):
    """diffusers' UNet2DModel from a checkout (ROOT/src/diffusers) under Debian's torch 1.13 and packages.

    Debian has no huggingface_hub or safetensors (stubbed: any submodule, any attribute) and torch 1.13 lacks some
    names diffusers' import chain touches at import time (torch.xpu, float8 dtypes, device_mesh, torch.compiler,
    torch._dynamo: inert stand-ins). The packages diffusers, diffusers.models(.unets, .transformers) are created
    bare, so that only the UNet's own modules are imported, not every model of diffusers' __init__.
    Needs python3-packaging, python3-tqdm, python3-pil, python3-regex, python3-filelock,
    python3-importlib-metadata. `overrides` {stubbed module name: {attribute: value}} gives a stub real
    attributes (check_save_pretrained.py: a safetensors reader and huggingface_hub's decorator, for from_pretrained).
    """
    import importlib.abc
    import importlib.machinery
    import sys
    import types

    class Anything:
        def __init__(self, *a, **k): pass
        def __call__(self, *a, **k): return Anything()
        def __getattr__(self, name): return Anything()
        def __mro_entries__(self, bases): return (object,)
        def __iter__(self): return iter(())
        def __bool__(self): return False
        def __or__(self, other): return self
        def __ror__(self, other): return self
        def __getitem__(self, key): return self
        def __str__(self): return "/nonexistent"
        __fspath__ = __str__

    class StubModule(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return "/nonexistent" if name.endswith(("_HOME", "_PATH", "_CACHE")) else Anything()

    stubbed = ("huggingface_hub", "safetensors", "torch.distributed._functional_collectives",
               "torch.distributed.tensor", "torch.nn.attention")

    class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):  # last on the path: only for missing ones
        def find_spec(self, name, path, target=None):
            if any(name == s or name.startswith(s + ".") for s in stubbed):
                return importlib.machinery.ModuleSpec(name, self, is_package=True)
            return None

        def create_module(self, spec):
            m = StubModule(spec.name)
            m.__path__, m.__version__ = [], "0.30.0"
            return m

        def exec_module(self, module):
            for name, value in (overrides or {}).get(module.__name__, {}).items():
                setattr(module, name, value)

    sys.meta_path.append(Finder())

    def noop(*a, **k):
        return None

    def passthrough(*a, **k):  # decorators (allow_in_graph, disable) return what they decorate
        if len(a) == 1 and callable(a[0]) and not k:
            return a[0]
        return (lambda f=None, *_a, **_k: f) if not a else False

    class Lenient(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return passthrough

    for dev in ("xpu", "mps", "npu", "mlu", "musa"):
        if not hasattr(torch, dev):
            setattr(torch, dev, types.SimpleNamespace(empty_cache=noop, device_count=lambda: 0,
                                                      is_available=lambda: False, manual_seed=noop,
                                                      reset_peak_memory_stats=noop, synchronize=noop,
                                                      max_memory_allocated=lambda *a: 0))
    for name in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "uint16", "uint32",
                 "uint64", *(f"uint{i}" for i in range(1, 8)), *(f"int{i}" for i in range(1, 8))):
        if not hasattr(torch, name):
            setattr(torch, name, torch.float32 if name.startswith("float") else torch.int32)
    import torch.distributed as dist
    if not hasattr(dist, "device_mesh"):
        dist.device_mesh = types.SimpleNamespace(DeviceMesh=object, init_device_mesh=noop)
    for name in ("compiler", "_dynamo"):
        try:
            __import__("torch." + name)
        except ImportError:
            setattr(torch, name, Lenient("torch." + name))
            sys.modules["torch." + name] = getattr(torch, name)
    pkg = os.path.join(root, "src", "diffusers")
    with open(os.path.join(pkg, "__init__.py")) as f:
        version = next(line.split('"')[1] for line in f if line.startswith("__version__"))
    for name, sub in (("diffusers", ""), ("diffusers.models", "models"), ("diffusers.models.unets", "models/unets"),
                      ("diffusers.models.transformers", "models/transformers")):
        m = types.ModuleType(name)
        m.__path__, m.__package__, m.__version__ = [os.path.join(pkg, sub)], name, version
        sys.modules[name] = m
    import diffusers.utils  # first, as diffusers' __init__ does, against an import cycle
    diffusers.utils.logging.set_verbosity_error()  # its note on casting a model with .to(dtype)
    from diffusers.models.unets.unet_2d import UNet2DModel as DiffusersUNet2DModel
    from diffusers.models.embeddings import get_timestep_embedding
    return DiffusersUNet2DModel, get_timestep_embedding, version


def check_diffusers(root, data):
    """Our reference and the committed fixtures against diffusers' UNet2DModel with the same state_dict."""
    import copy

    DiffusersUNet2DModel, get_timestep_embedding, version = import_diffusers_unet(root)
    print(f"diffusers {version} from {root}")

    # 1. The embedding alone: diffusers' float32 get_timestep_embedding against ours over every integer timestep and
    # some fractional ones. Both take float32 t and float32 products; diffusers' float32 torch.exp gives some
    # frequencies one ulp off the correctly rounded ones (and t times that moves the argument by up to t ulps), its
    # sin/cos are faithful. So an entry e = sin(arg) or cos(arg) may differ by the float32 rounding of the argument
    # and of the value: |diffusers - ours| <= c 2^-24 (|arg| + |e|), c measured (asserted <= 4).
    ts = torch.cat([torch.arange(1000, dtype=torch.float64), torch.linspace(0.25, 998.75, 500, dtype=torch.float64)])
    worst_c, worst_abs, differing, total = 0.0, 0.0, 0, 0
    for dim in (8, 16, 32, 128):
        for flip in (False, True):
            for shift in (0, 1):
                a = get_timestep_embedding(ts, dim, flip_sin_to_cos=flip, downscale_freq_shift=shift).double()
                b = timestep_embedding(ts, dim, flip, shift).double()
                half = dim // 2
                exponent = (-math.log(10000) * torch.arange(half, dtype=torch.float32)) / (half - shift)
                arg = (ts[:, None].float() * torch.exp(exponent.double()).float()[None, :]).double().abs()
                arg = torch.cat([arg, arg], dim=1)  # sin and cos (either order) of the same arguments
                c = (a - b).abs() / ((arg + b.abs()) * 2.0 ** -24 + 1e-300)
                worst_c, worst_abs = max(worst_c, c.max().item()), max(worst_abs, (a - b).abs().max().item())
                differing, total = differing + (a != b).sum().item(), total + a.numel()
    print(f"timestep embedding, diffusers' float32 vs ours (dims 8-128, t in [0, 999]): {differing} of {total} entries "
          f"differ, by at most {worst_abs:.1e}, i.e. {worst_c:.2f} x 2^-24 (|arg| + |value|)")
    assert worst_c <= 4

    class OurTimesteps(torch.nn.Module):
        """diffusers' Timesteps with its parameters, computing our correctly rounded embedding."""

        def __init__(self, p):
            super().__init__()
            self.p = p

        def forward(self, timesteps):
            return timestep_embedding(timesteps.reshape(-1), self.p.num_channels, self.p.flip_sin_to_cos,
                                      self.p.downscale_freq_shift)

    def theirs_for(config, state, dtype, upcast=False, own_embedding=False):
        """diffusers' model; unless own_embedding, its time_proj gives our embedding (one ulp from its own)."""
        m = DiffusersUNet2DModel(**{k: v for k, v in config.items() if not k.startswith("_")}).eval()
        m.load_state_dict(state, strict=True)
        if not upcast:  # upcast_softmax computes a float64 model's softmax in float32 (.float()); float32 is alike
            for mod in m.modules():
                if hasattr(mod, "upcast_softmax"):
                    mod.upcast_softmax = False
        if not own_embedding:
            m.time_proj = OurTimesteps(m.time_proj)
        return m.to(dtype)

    def run(m, ours, x, t, labels, eps):
        m.zero_grad(set_to_none=True)
        x = x.clone().requires_grad_(True)
        if labels is not None and labels.is_floating_point():
            labels = labels.clone().requires_grad_(True)
        out = m(x, t, labels) if ours else m(x, t, class_labels=labels).sample
        loss = F.mse_loss(out, eps)
        loss.backward()
        grads = {n: p.grad for n, p in m.named_parameters()}
        if labels is not None and labels.requires_grad:
            grads["class_labels"] = labels.grad
        return out.detach(), loss.item(), x.grad, grads

    def rel(a, b):
        return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()

    def grad_rel(g, ref_grads, to_file=None, prefix=""):  # max |difference| over the largest reference gradient
        largest = max(v.abs().max().item() for v in ref_grads.values())
        key = (lambda n: prefix + to_file[n]) if to_file else (lambda n: n)
        return max((g[key(n)].double() - v.double()).abs().max().item() for n, v in ref_grads.items()) / largest

    def labels_of(f, key="class_labels", dtype=torch.float64):  # int labels, or an identity class embedding
        if key not in f:
            return None
        return f[key].to(dtype) if f[key].dim() == 2 else f[key].long()

    worst = {"f64": 0.0, "f32": 0.0, "adamw": 0.0, "own_embedding": 0.0}

    def note(kind, *values):
        worst[kind] = max(worst[kind], *values)

    for name in CASES:
        path = os.path.join(data, name)
        ours, config, to_file = load_model_dir(path)
        state = ours.state_dict()
        fx = read_safetensors(os.path.join(path, "reference_grads.safetensors"))
        x, eps, t = fx["sample"], fx["eps"], fx["timesteps"].long()
        labels = labels_of(fx)
        out, loss, gx, g = run(theirs_for(config, state, torch.float64), False, x, t, labels, eps)
        gl = g.pop("class_labels", None)
        r = (rel(fx["output"], out), abs(fx["loss"].item() - loss) / loss, rel(fx["grad.sample"], gx),
             grad_rel(fx, g, to_file, "grad."))
        note("f64", *r)
        print(f"{name} float64 fixture vs diffusers: output {r[0]:.1e}, loss {r[1]:.1e}, grad.sample {r[2]:.1e}, "
              f"parameter grads {r[3]:.1e} (of the largest)")
        if gl is not None:
            note("f64", rel(fx["grad.class_labels"], gl))
            print(f"    grad.class_labels (identity class embedding) vs diffusers: "
                  f"{rel(fx['grad.class_labels'], gl):.1e}")
        out_own, _, _, g_own = run(theirs_for(config, state, torch.float64, own_embedding=True), False, x, t, labels,
                                   eps)
        g_own.pop("class_labels", None)
        r = (rel(fx["output"], out_own), grad_rel(fx, g_own, to_file, "grad."))
        note("own_embedding", *r)
        print(f"    diffusers with its own float32 embedding (one ulp away in places): output {r[0]:.1e}, "
              f"parameter grads {r[1]:.1e}")
        out_up = theirs_for(config, state, torch.float64, upcast=True)(x, t, class_labels=labels).sample.detach()
        print(f"    diffusers with its float32 softmax in the float64 model: output {rel(fx['output'], out_up):.1e}")
        f32 = read_safetensors(os.path.join(path, "reference_grads_f32.safetensors"))
        labels32 = labels_of(f32, dtype=torch.float32)
        # diffusers as it is in float32 (its own float32 embedding; the float32 fixtures of tiny, tiny_legacy and
        # tiny_class were written with that embedding, tiny_identity's with the correctly rounded one)
        out32, _, gx32, g32 = run(theirs_for(config, state, torch.float32, own_embedding=True), False, x.float(), t,
                                  labels32, eps.float())
        g32.pop("class_labels", None)
        g.pop("class_labels", None)
        r = (rel(f32["output"], out32), grad_rel(f32, g32, to_file, "grad."), rel(f32["grad.sample"], gx32))
        note("f32", *r)
        print(f"    float32 fixture vs diffusers in float32: output {r[0]:.1e}, grads {r[1]:.1e}, grad.sample "
              f"{r[2]:.1e}; diffusers float32 vs float64 grads {grad_rel(g32, g):.1e}")
        io = read_safetensors(os.path.join(path, "reference_io.safetensors"))
        il = labels_of(io)
        with torch.no_grad():
            o = theirs_for(config, state, torch.float64)(io["sample"], io["timesteps"].long(), class_labels=il).sample
        note("f64", rel(io["output_f64"], o))
        print(f"    reference_io output_f64 vs diffusers: {rel(io['output_f64'], o):.1e}")
        if CASES[name][3]:
            fa = read_safetensors(os.path.join(path, "reference_adamw.safetensors"))
            m = theirs_for(config, state, torch.float64)
            opt = torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)
            losses = []
            for k in range(10):
                lab = fa.get(f"step_{k}.class_labels")
                opt.zero_grad()
                loss = F.mse_loss(m(fa[f"step_{k}.sample"], fa[f"step_{k}.timesteps"].long(),
                                    class_labels=None if lab is None else lab.long()).sample, fa[f"step_{k}.eps"])
                loss.backward()
                opt.step()
                losses.append(loss.item())
            dl = ((torch.tensor(losses, dtype=torch.float64) - fa["loss"]).abs() / fa["loss"]).max().item()
            dp = max(rel(fa["final." + to_file[n]], p.detach()) for n, p in m.named_parameters())
            moved = max(rel(fa["final." + to_file[n]], state[n]) for n in state)
            note("adamw", dl, dp)
            print(f"    ten AdamW steps on diffusers' model vs the fixture: losses {dl:.1e}, final parameters {dp:.1e}"
                  f" (the steps moved them by up to {moved:.1e} of the largest)")

    base = json.load(open(os.path.join(data, "tiny_class", "config.json")))
    for kind in ("timestep", "identity"):
        config = dict(base, class_embed_type=kind)
        ours = UNet2DModel(config).eval()
        representable_weights(ours, torch.Generator().manual_seed(7))
        g = torch.Generator().manual_seed(8)
        x, eps = torch.randn(3, 1, 8, 8, generator=g), torch.randn(3, 1, 8, 8, generator=g)
        t = torch.tensor([5, 600, 999])
        labels = torch.tensor([1, 4, 9]) if kind == "timestep" else torch.randn(3, 32, generator=g)
        for dtype in (torch.float32, torch.float64):
            theirs = theirs_for(config, ours.state_dict(), dtype)
            lab = labels.to(dtype) if kind == "identity" else labels
            if dtype == torch.float64 and kind == "timestep":
                try:
                    theirs(x.to(dtype), t, class_labels=lab)
                except RuntimeError as e:
                    print(f"{kind} float64: diffusers' UNet2DModel fails ({e}): its time_proj of the labels stays "
                          f"float32; compared with that projection cast to float64, as our reference does:")
                proj = theirs.time_proj

                class Cast(torch.nn.Module):
                    def __init__(self, p):
                        super().__init__()
                        self.p = p

                    def forward(self, v):
                        return self.p(v).double()

                theirs.time_proj = Cast(proj)
            o1, _, _, g1 = run(copy.deepcopy(ours).to(dtype), True, x.to(dtype), t, lab, eps.to(dtype))
            o2, _, _, g2 = run(theirs, False, x.to(dtype), t, lab, eps.to(dtype))
            tag = "f64" if dtype == torch.float64 else "f32"
            note(tag, rel(o1, o2), grad_rel(g1, g2))
            names = sorted(n for n in g2 if n.startswith("class_embedding")) or "none"
            print(f"class_embed_type {kind} {dtype}: output {rel(o1, o2):.1e}, grads {grad_rel(g1, g2):.1e}"
                  f" (class parameters: {names})")

    for name in ("tiny_class", "tiny_legacy"):  # dropout: same masks only if every Dropout sits where diffusers' does
        path = os.path.join(data, name)
        src, config, to_file = load_model_dir(path)
        config = dict(config, dropout=0.3)
        ours = UNet2DModel(config).double()
        ours.load_state_dict(src.state_dict())
        theirs = theirs_for(config, src.state_dict(), torch.float64).train()
        fx = read_safetensors(os.path.join(path, "reference_grads.safetensors"))
        labels = fx["class_labels"].long() if "class_labels" in fx else None
        args = (fx["sample"], fx["timesteps"].long(), labels, fx["eps"])
        torch.manual_seed(123)
        o1, _, _, g1 = run(ours.train(), True, *args)
        torch.manual_seed(123)
        o2, _, _, g2 = run(theirs, False, *args)
        note("f64", rel(o1, o2), grad_rel(g1, g2))
        print(f"{name} with dropout 0.3 in train mode, same torch seed: output {rel(o1, o2):.1e}, grads "
              f"{grad_rel(g1, g2):.1e}; the eval-mode output differs by {rel(fx['output'], o2):.1e}")

    ours, config, _ = load_model_dir(os.path.join(data, "tiny_class"))
    plain, plain_config, _ = load_model_dir(os.path.join(data, "tiny"))
    cases = [("labels missing", ours, theirs_for(config, ours.state_dict(), torch.float64),
              torch.zeros(1, 1, 8, 8, dtype=torch.float64), None),
             ("labels without a class embedding", plain, theirs_for(plain_config, plain.state_dict(), torch.float64),
              torch.zeros(1, 3, 8, 8, dtype=torch.float64), torch.tensor([2]))]
    for what, mine, theirs, x, labels in cases:
        messages = []
        for m in (mine, theirs):
            try:
                m(x, torch.tensor([1]), labels) if m is mine else m(x, torch.tensor([1]), class_labels=labels)
                messages.append("no error")
            except ValueError as e:
                messages.append(f"ValueError: {e}")
        print(f"{what}: ours {messages[0]!r}; diffusers {messages[1]!r}")
        assert all(s.startswith("ValueError") for s in messages)
    # AdamW divides by sqrt(v) + 1e-8: the gradients of to_k.bias, zero but for rounding (a key bias shifts every
    # score of a query alike), get steps of lr * g / (|g| + 1e-8) from rounding noise; that is the 1e-11
    print(f"worst: float64 {worst['f64']:.1e}, float32 {worst['f32']:.1e}, AdamW (float64) {worst['adamw']:.1e}; "
          f"float64 against diffusers with its own float32 embedding {worst['own_embedding']:.1e}")
    assert worst["f64"] < 1e-13 and worst["f32"] < 1e-5 and worst["adamw"] < 1e-10, worst
    assert worst["own_embedding"] < 1e-5, worst


# model directory: (seed, batch, image size, AdamW fixture?)
CASES = {
    "tiny": (20261101, 3, 16, True),
    "tiny_legacy": (20261102, 3, 16, False),
    "tiny_class": (20261103, 3, 8, True),
    "tiny_identity": (20261104, 3, 8, False),
}
KINDS = ("f64", "f32", "adamw")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "data", "unet"))
    p.add_argument("--only", nargs="+", choices=list(CASES))
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS),
                   help="which files to write: reference_grads (f64), reference_grads_f32 (f32), reference_adamw")
    p.add_argument("--check-diffusers", metavar="DIR", help="a diffusers checkout to confirm the fixtures against "
                   "(writes nothing)")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.check_diffusers:
        check_diffusers(args.check_diffusers, args.data)
        return
    for name in args.only or CASES:
        seed, batch, size, adamw = CASES[name]
        path = os.path.join(args.data, name)
        generator = torch.Generator().manual_seed(seed)
        model, config, to_file = load_model_dir(path)
        sample, t, labels, eps = draw_batch(config, generator, batch, size)
        if "f64" in args.kinds:
            write_grads(os.path.join(path, "reference_grads.safetensors"), model, to_file, torch.float64,
                        sample, t, labels, eps)
        if "f32" in args.kinds:
            write_grads(os.path.join(path, "reference_grads_f32.safetensors"), load_model_dir(path)[0], to_file,
                        torch.float32, sample, t, labels, eps)
        if adamw and "adamw" in args.kinds:
            write_adamw(os.path.join(path, "reference_adamw.safetensors"), load_model_dir(path)[0], to_file,
                        config, generator)


if __name__ == "__main__":
    main()
