// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// The safetensors file format (Hugging Face): a reader that trusts nothing in the file, and a writer.
//
//   bytes [0, 8)        N, the header length, a little-endian u64
//   bytes [8, 8 + N)    the header: a UTF-8 JSON object
//                         {"NAME": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [BEGIN, END]}, ...,
//                          "__metadata__": {"key": "value", ...}}
//                       which starts with '{' and may be padded at the end with spaces
//   bytes [8 + N, end)  the data section; [BEGIN, END) is relative to its start, C order, little-endian
//
// The rules the reader enforces are those of the reference implementation (huggingface/safetensors):
// N <= 100,000,000 and 8 + N <= file size; the header is JSON with no duplicate keys; every tensor has a
// known dtype, a shape of non-negative integers and END - BEGIN = product(shape) * dtype size; the tensors,
// sorted by offset, cover the data section exactly once, with no overlap, no gap and no trailing byte (an
// empty tensor, with a 0 in its shape, covers nothing; a rank-0 tensor, shape [], is one scalar);
// `__metadata__` maps strings to strings. Beyond the reference, a shape must be one Eigen can size (the product
// of its extents before the first 0 fits in Eigen::Index) and load() reads regular files only. Unknown fields inside a tensor's entry are ignored, as there.
// Every violation throws ddpm::format_error naming the file, the tensor and what is wrong.
//
// The parts: safetensors/dtype.hpp (element types, F16/BF16 conversions), safetensors/header.hpp (TensorInfo
// and the header checks), safetensors/reader.hpp (Safetensors), safetensors/writer.hpp (SafetensorsWriter).
// Include this header; the parts are an implementation layout.

#include "ddpm/io/safetensors/dtype.hpp"
#include "ddpm/io/safetensors/header.hpp"
#include "ddpm/io/safetensors/reader.hpp"
#include "ddpm/io/safetensors/writer.hpp"
