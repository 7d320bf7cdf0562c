#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The ddpm authors
"""Writes the seed corpus of fuzz_safetensors into tests/fuzz/corpus/: small valid files (each dtype, a scalar,
an empty tensor, metadata, misaligned data, padding) and small invalid ones (one defect each).
Standard library only. Run: /usr/bin/python3 tests/fuzz/make_corpus.py"""
import json
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))
out_dir = os.path.join(here, "corpus")
os.makedirs(out_dir, exist_ok=True)


def file(header, data=b"", declared=None, pad=0):
    text = (header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))).encode("utf-8")
    text += b" " * pad
    return struct.pack("<Q", len(text) if declared is None else declared) + text + data


def tensors(*items, metadata=None):
    """items: (name, dtype, shape, raw bytes); laid out in the given order."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in items:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    return header, data


f32 = struct.pack("<4f", 1.0, -2.5, 0.0, float("inf"))
f16 = struct.pack("<4H", 0x3C00, 0x8001, 0x7BFF, 0x7E00)
bf16 = struct.pack("<4H", 0x3F80, 0x0001, 0xFF80, 0x7FC0)
f64 = struct.pack("<2d", 3.141592653589793, -1e300)

seeds = {}
h, d = tensors(("w", "F32", [2, 2], f32))
seeds["valid_f32"] = file(h, d)
h, d = tensors(("a", "F64", [2], f64), ("b", "F32", [4], f32), ("c", "F16", [2, 2], f16), ("d", "BF16", [4], bf16),
               metadata={"format": "pt", "note": "seed"})
seeds["valid_all_floats_metadata"] = file(h, d, pad=3)
h, d = tensors(("pad", "U8", [3], b"\x01\x02\x03"), ("x", "F32", [1, 1, 1, 2], f32[:8]), ("s", "F16", [], f16[:2]),
               ("e", "F32", [0, 7], b""), ("i", "I64", [1], struct.pack("<q", -5)), ("k", "BOOL", [2], b"\x00\x01"))
seeds["valid_misaligned_mixed"] = file(h, d)
seeds["valid_empty"] = file("{}")
seeds["valid_metadata_only"] = file({"__metadata__": {"k": "v"}})
h, d = tensors(("i8", "I8", [1], b"\xff"), ("u16", "U16", [1], b"\x01\x00"), ("i16", "I16", [1], b"\x02\x00"),
               ("u32", "U32", [1], b"\x00" * 4), ("i32", "I32", [1], b"\x00" * 4), ("u64", "U64", [1], b"\x00" * 8))
seeds["valid_integers"] = file(h, d)

h, d = tensors(("w", "F32", [2, 2], f32))
good = file(h, d)
seeds["bad_truncated"] = good[:-3]
seeds["bad_trailing_byte"] = good + b"\x00"
seeds["bad_header_length_huge"] = b"\xff" * 8 + b"{}"
seeds["bad_header_length_past_end"] = file(h, d, declared=len(good))
seeds["bad_json"] = file('{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]', b"\x00" * 4)
seeds["bad_dtype"] = file({"w": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}}, b"\x00" * 4)
seeds["bad_overlap"] = file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                             "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\x00" * 12)
seeds["bad_offsets_out_of_range"] = file({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\x00" * 4)
seeds["bad_size_mismatch"] = file({"w": {"dtype": "F16", "shape": [3], "data_offsets": [0, 8]}}, b"\x00" * 8)
seeds["bad_duplicate_key"] = file('{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                                  '"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"\x00")
seeds["bad_shape_negative"] = file({"w": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 1]}}, b"\x00")
seeds["bad_shape_overflow"] = file({"w": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 4]}},
                                   b"\x00" * 4)
# Empty (a 0 extent), but 2^32 * 2^32 overflows Eigen::Index before the 0 is reached (issue 13).
seeds["bad_empty_shape_overflow"] = file({"w": {"dtype": "F32", "shape": [2**32, 2**32, 0], "data_offsets": [0, 0]}})
seeds["bad_metadata_value"] = file({"__metadata__": {"epoch": 3}})
seeds["bad_gap"] = file({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
                         "b": {"dtype": "U8", "shape": [1], "data_offsets": [2, 3]}}, b"\x00" * 3)

for old in os.listdir(out_dir):
    os.remove(os.path.join(out_dir, old))
for name, content in sorted(seeds.items()):
    with open(os.path.join(out_dir, name + ".safetensors"), "wb") as f:
        f.write(content)
print(len(seeds), "seeds,", sum(len(c) for c in seeds.values()), "bytes, in", out_dir)
