#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The ddpm authors
"""Writes reference.safetensors: a fixture made without ddpm, to test ddpm's reader and writer against.

The file is written by hand here (struct + json, the layout of the safetensors format) and every dtype
conversion is PyTorch's: float32 -> float16 / bfloat16 (round to nearest, ties to even), float16 / bfloat16
-> float32 (exact) and float64 -> float32. Unlike the reference writer, this one puts the tensors in a
shuffled order, starts with a 3-byte tensor so that the data after it is misaligned, and does not pad the
header, so the reader's handling of unaligned data and unsorted offsets is exercised.

Tensors:
  source       F32 (N,)   special values (ties, overflow, subnormals, inf, NaN) and scaled normal samples
  as_f16       F16 (N,)   torch: source.to(float16)
  as_bf16      BF16 (N,)  torch: source.to(bfloat16)
  f16_as_f32   F32 (N,)   torch: as_f16.to(float32)
  bf16_as_f32  BF16 -> F32 likewise
  f64          F64 (2, 3, 4)    f64_as_f32: F32 (2, 3, 4), torch: f64.to(float32)
  scalar       F32 ()  = 0.15625
  empty        F32 (0, 3)
  steps        I64 (3,) = [0, 500, 999]
  pad          U8 (3,)  = [1, 2, 3]

Run: /usr/bin/python3 tests/data/io/make_reference_safetensors.py   (from the repository root)
"""
import json
import math
import os
import random
import struct

import torch

torch.manual_seed(20260101)
f32 = struct.Struct("<f")


def bits32(u):
    return f32.unpack(struct.pack("<I", u))[0]


special = [
    0.0, -0.0, 1.0, -2.0, 0.1, 1.0 / 3.0, -1.0 / 3.0,
    65504.0, 65519.0, 65520.0, 65536.0, -65520.0, 1e10, -1e10, math.inf, -math.inf, math.nan,
    2.0**-24, 2.0**-25, 3 * 2.0**-25, 2.0**-25 * (1 + 2.0**-20), 1023 * 2.0**-24, 2.0**-14, 2.0**-26,
    1 + 2.0**-11, 1 + 3 * 2.0**-11, 1 + 2.0**-11 + 2.0**-20, 2049.0, 2051.0,
    1 + 2.0**-8, 1 + 3 * 2.0**-8, 1 + 2.0**-8 + 2.0**-20, 257.0, 259.0,
    bits32(0x7F7F0000), bits32(0x7F7F7FFF), bits32(0x7F7F8000), bits32(0x7F7FFFFF), bits32(0xFF7FFFFF),
    bits32(0x00800000), bits32(0x00000001), bits32(0x00010000), bits32(0x00018000), bits32(0x00028000),
    bits32(0x40490FDB), bits32(0x3F808000), bits32(0x3F818000),
]
scaled = torch.cat([torch.randn(12) * 10.0**k for k in range(-9, 10)])
source = torch.cat([torch.tensor(special, dtype=torch.float32), scaled.to(torch.float32)])
as_f16 = source.to(torch.float16)
as_bf16 = source.to(torch.bfloat16)
f64 = torch.randn(2, 3, 4, dtype=torch.float64) * 1e3 + 1e-9

tensors = {
    "source": source,
    "as_f16": as_f16,
    "as_bf16": as_bf16,
    "f16_as_f32": as_f16.to(torch.float32),
    "bf16_as_f32": as_bf16.to(torch.float32),
    "f64": f64,
    "f64_as_f32": f64.to(torch.float32),
    "scalar": torch.tensor(0.15625, dtype=torch.float32),
    "empty": torch.zeros(0, 3, dtype=torch.float32),
    "steps": torch.tensor([0, 500, 999], dtype=torch.int64),
    "pad": torch.tensor([1, 2, 3], dtype=torch.uint8),
}
names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
         torch.int64: "I64", torch.uint8: "U8"}


def raw(t):
    # The tensor's bytes, little-endian, C order; 16-bit floats through their int16 bit patterns.
    t = t.contiguous()
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.view(torch.int16)
    return t.numpy().tobytes()


order = ["pad"] + random.Random(7).sample([k for k in tensors if k != "pad"], len(tensors) - 1)
header, data = {"__metadata__": {"format": "pt", "producer": "make_reference_safetensors.py"}}, b""
for name in order:
    t = tensors[name]
    b = raw(t)
    header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [len(data), len(data) + len(b)]}
    data += b
text = json.dumps(dict(reversed(list(header.items())))).encode("utf-8")
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference.safetensors")
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + data)
print(out, 8 + len(text) + len(data), "bytes")
