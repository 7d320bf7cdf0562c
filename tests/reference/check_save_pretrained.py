#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The ddpm authors
"""Does a model directory written by ddpm::nn::save_pretrained load in PyTorch and diffusers, with ddpm's outputs?

    build/<dir>/tests/export_unet_check DIR            # the C++ side: DIR/export_check.safetensors
    /usr/bin/python3 tests/reference/check_save_pretrained.py DIR [--diffusers CHECKOUT]

DIR is a folder as ddpm::nn::save_pretrained writes it (config.json + diffusion_pytorch_model.safetensors), e.g.
the unet/ folder of `train_digits --smoke --out OUT` (the EMA weights of a model ddpm trained). export_unet_check
(tests/reference/export_unet_check.cpp) read it with UNet2D::from_pretrained and wrote DIR/export_check.safetensors:
an input batch ("sample", "timesteps", "class_labels" if the model is class-conditional) and the C++ outputs in
float32 and float64 ("output_f32", "output_f64").

This script checks, and fails (exit status 1) unless all hold:
1. config.json is a UNet2DModel config as diffusers writes it: "_class_name" "UNet2DModel", every key of
   UNet2DModel's __init__ (nulls included), no other key but "_"-prefixed bookkeeping.
2. Our PyTorch reference UNet2DModel (make_unet_fixture.py, diffusers' names and arithmetic), built from
   config.json, loads the safetensors file with load_state_dict(strict=True): no missing and no unexpected tensor,
   every shape right; the tensors are F32 (save_pretrained's default, as diffusers writes them) or F16, BF16,
   F64 (save_pretrained's dtype argument; compared after conversion to float32 / float64).
3. Run on the stored input, the reference reproduces the C++ outputs: float64 within 1e-9 of the largest |output|
   (both compute the same float32 timestep embedding; the rest is double rounding), float32 within 1e-4.
4. With --diffusers CHECKOUT (a huggingface/diffusers work tree outside the project; nothing of it is committed):
   diffusers' own UNet2DModel.from_pretrained(DIR) loads the folder (Debian has no huggingface_hub or safetensors
   package: the loader gets a safetensors reader written here and huggingface_hub's argument-checking decorator as a
   no-op; the rest of from_pretrained runs as diffusers wrote it), holds the file's tensors exactly, and its outputs
   match the C++ ones: float32 within 1e-4; float64 (model.double(), its float32 softmax upcast off) within 1e-6
   with diffusers' own float32 timestep embedding, whose exp/sin/cos may be one float32 ulp away from the correctly
   rounded ones ddpm computes (docs/unet.md, "Timestep embedding"), and within 1e-9 with its time_proj computing
   the correctly rounded embedding.

Measured (docs/training.md, "Training a UNet"), on the EMA weights of `train_digits --smoke` (702,753 parameters,
3 images with labels): reference vs ddpm 3.3e-16 (float64), 2.1e-7 (float32); diffusers' from_pretrained vs ddpm
1.8e-7 (float32), 2.3e-9 (float64, its own embedding), 3.3e-16 (float64, correctly rounded embedding); also on
copies of tests/data/unet/tiny (F16 weights) and tiny_identity (class_embed_type "identity"): all within 1.6e-15
in float64 with the same embedding, 1.1e-6 in float32.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_unet_fixture import DEFAULT_CONFIG, LEGACY_NAMES, UNet2DModel, timestep_embedding  # noqa: E402
from make_unet_grad_fixture import import_diffusers_unet  # noqa: E402

NUMPY = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I64": np.int64}


def read_tensors(path):
    """{name: tensor in the file's own dtype} and {name: dtype string} (BF16 kept as bfloat16)."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    tensors, dtypes = {}, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        data = raw[8 + n + begin:8 + n + end]
        if info["dtype"] == "BF16":
            t = torch.from_numpy(np.frombuffer(data, dtype=np.int16).copy()).view(torch.bfloat16)
        else:
            t = torch.from_numpy(np.frombuffer(data, dtype=NUMPY[info["dtype"]]).copy())
        tensors[name] = t.reshape(info["shape"])
        dtypes[name] = info["dtype"]
    return tensors, dtypes


def rel(a, b):
    """max |a - b| / max |b|, in float64."""
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def class_input(io, dtype):
    if "class_labels" not in io:
        return None
    c = io["class_labels"]
    return c.to(dtype) if c.dim() == 2 else c.long()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", help="a folder written by ddpm::nn::save_pretrained, with export_check.safetensors")
    p.add_argument("--diffusers", metavar="CHECKOUT", help="a huggingface/diffusers work tree (src/diffusers)")
    args = p.parse_args()
    torch.set_num_threads(1)
    failures = []

    def check(ok, what):
        print(("ok    " if ok else "FAIL  ") + what)
        if not ok:
            failures.append(what)

    # 1. config.json
    with open(os.path.join(args.dir, "config.json")) as f:
        config = json.load(f)
    keys = {k for k in config if not k.startswith("_")}
    check(config.get("_class_name") == "UNet2DModel" and "_diffusers_version" in config,
          f"config.json: _class_name {config.get('_class_name')!r}, _diffusers_version "
          f"{config.get('_diffusers_version')!r}")
    check(keys == set(DEFAULT_CONFIG), f"config.json holds every UNet2DModel key and no other (missing "
          f"{sorted(set(DEFAULT_CONFIG) - keys)}, unexpected {sorted(keys - set(DEFAULT_CONFIG))})")

    # 2. the weights, strictly
    state, dtypes = read_tensors(os.path.join(args.dir, "diffusion_pytorch_model.safetensors"))
    model = UNet2DModel(config).eval()
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    legacy = [k for k in unexpected if any(old in k for old in LEGACY_NAMES.values())]
    check(not missing and not unexpected, f"diffusion_pytorch_model.safetensors: {len(state)} tensors, missing "
          f"{missing}, unexpected {unexpected}" + (" (older attention names)" if legacy else ""))
    check(set(dtypes.values()) <= {"F16", "BF16", "F32", "F64"},
          f"dtypes {sorted(set(dtypes.values()))} (save_pretrained writes F32 unless asked for F16, BF16 or F64)")
    if missing or unexpected:
        sys.exit(1)
    result = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    check(not result.missing_keys and not result.unexpected_keys, "load_state_dict(strict=True)")
    print(f"      {sum(v.numel() for v in state.values())} parameters in {len(state)} tensors")

    # 3. our reference against the C++ outputs
    io, _ = read_tensors(os.path.join(args.dir, "export_check.safetensors"))
    x, t = io["sample"], io["timesteps"].long()
    print(f"      input: {tuple(x.shape)}, timesteps {t.tolist()}, class_labels "
          f"{None if 'class_labels' not in io else (io['class_labels'].long().tolist() if io['class_labels'].dim() == 1 else tuple(io['class_labels'].shape))}")
    with torch.no_grad():
        out32 = model(x.float(), t, class_input(io, torch.float32))
        model64 = UNet2DModel(config).eval().double()
        model64.load_state_dict({k: v.double() for k, v in state.items()}, strict=True)
        out64 = model64(x.double(), t, class_input(io, torch.float64))
    e32, e64 = rel(io["output_f32"], out32), rel(io["output_f64"], out64)
    check(e64 <= 1e-9, f"PyTorch reference vs ddpm, float64: {e64:.1e} of the largest |output| (bound 1e-9)")
    check(e32 <= 1e-4, f"PyTorch reference vs ddpm, float32: {e32:.1e} (bound 1e-4)")

    # 4. diffusers' own from_pretrained
    if args.diffusers:
        def load_file(path, device="cpu"):
            return read_tensors(path)[0]

        def load(data):
            raise NotImplementedError("safetensors.torch.load of bytes is not needed here")

        overrides = {"safetensors.torch": {"load_file": load_file, "load": load},
                     "huggingface_hub.utils": {"validate_hf_hub_args": lambda f: f}}
        Diffusers, _, version = import_diffusers_unet(args.diffusers, overrides)
        import safetensors  # the stub; diffusers reads safetensors.torch.load_file through it
        import safetensors.torch
        safetensors.torch = sys.modules["safetensors.torch"]
        theirs = Diffusers.from_pretrained(args.dir).eval()
        print(f"      diffusers {version} from {args.diffusers}: UNet2DModel.from_pretrained({args.dir!r})")
        their_state = theirs.state_dict()
        same = set(their_state) == set(state) and all(torch.equal(their_state[k], state[k].float()) for k in state)
        check(same, "diffusers' from_pretrained holds exactly the file's tensors (as float32)")
        with torch.no_grad():
            d32 = theirs(x.float(), t, class_labels=class_input(io, torch.float32)).sample
            for m in theirs.modules():
                if hasattr(m, "upcast_softmax"):
                    m.upcast_softmax = False
            theirs = theirs.double()
            d64 = theirs(x.double(), t, class_labels=class_input(io, torch.float64)).sample
            proj = theirs.time_proj

            class Rounded(torch.nn.Module):  # diffusers' Timesteps, computing the correctly rounded embedding
                def forward(self, timesteps):
                    return timestep_embedding(timesteps.reshape(-1), proj.num_channels, proj.flip_sin_to_cos,
                                              proj.downscale_freq_shift)

            theirs.time_proj = Rounded()
            d64r = theirs(x.double(), t, class_labels=class_input(io, torch.float64)).sample
        r32, r64, r64r = rel(io["output_f32"], d32), rel(io["output_f64"], d64), rel(io["output_f64"], d64r)
        check(r32 <= 1e-4, f"diffusers vs ddpm, float32: {r32:.1e} (bound 1e-4)")
        check(r64 <= 1e-6, f"diffusers vs ddpm, float64 with diffusers' own float32 embedding: {r64:.1e} (bound 1e-6)")
        check(r64r <= 1e-9, f"diffusers vs ddpm, float64 with the correctly rounded embedding: {r64r:.1e} "
              f"(bound 1e-9)")
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
