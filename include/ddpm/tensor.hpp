// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Tensors, views of a caller's buffer, shape checks, and the one fused kernel that almost every
// per-timestep formula of the library reduces to: out[b] = a[b] * x[b] + c[b] * y[b], where b runs over
// the batch (dimension 0) and a[b], c[b] are per-sample coefficients.

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Core>
#include <unsupported/Eigen/CXX11/Tensor>

#include "ddpm/error.hpp"

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace ddpm {

/// The library's tensor: row-major (C order) so that an NCHW batch has the memory layout of a contiguous
/// PyTorch tensor and of a safetensors buffer.
template <class S, int R>
using Tensor = Eigen::Tensor<S, R, Eigen::RowMajor>;

/// A mutable view of a caller's row-major buffer (no copy), e.g. `TensorMap<float, 4>(ptr, n, c, h, w)`.
template <class S, int R>
using TensorMap = Eigen::TensorMap<Tensor<S, R>>;

/// A read-only view of a caller's row-major buffer (e.g. an ONNX Runtime output).
template <class S, int R>
using ConstTensorMap = Eigen::TensorMap<const Tensor<S, R>>;

namespace detail {
template <class T>
using data_pointer_t = decltype(std::declval<T&>().data());
template <class T>
using element_t = std::remove_pointer_t<data_pointer_t<T>>;
}  // namespace detail

/// A dense, contiguous, row-major Eigen tensor of floating-point scalars: `Tensor<S,R>`, `TensorMap` or
/// `ConstTensorMap`. Every kernel of the library accepts any of them.
template <class T>
concept DenseTensor = requires(T& t) {
  { t.data() } -> std::convertible_to<const void*>;
  t.dimensions();
  t.size();
} && (int(std::remove_cvref_t<T>::Layout) == int(Eigen::RowMajor)) &&
                      (std::remove_cvref_t<T>::NumIndices >= 1) &&
                      std::floating_point<std::remove_cv_t<detail::element_t<T>>>;

/// A DenseTensor whose elements can be written (an output argument).
template <class T>
concept MutableDenseTensor = DenseTensor<T> && !std::is_const_v<detail::element_t<T>>;

/// The scalar type of a DenseTensor.
template <DenseTensor T>
using scalar_t = std::remove_cv_t<detail::element_t<T>>;

/// The rank (number of dimensions) of a DenseTensor.
template <DenseTensor T>
inline constexpr int rank_v = static_cast<int>(std::remove_cvref_t<T>::NumIndices);

/// The plain tensor type that a function returns for an argument of type T.
template <DenseTensor T>
using plain_tensor_t = Tensor<scalar_t<T>, rank_v<T>>;

namespace detail {

template <class T>
inline constexpr bool is_plain_tensor_v = false;
template <class S, int R>
inline constexpr bool is_plain_tensor_v<Eigen::Tensor<S, R, Eigen::RowMajor>> = true;

/// "(16, 3, 64, 64)", "()" for a scalar: a shape in error messages (tensors, files, parameters).
inline std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += ddpm::detail::number_string(shape[i]);
  }
  return s + ")";
}

/// The shape of a tensor, as above.
template <DenseTensor T>
std::string shape_string(const T& t) {
  std::vector<std::int64_t> dims(static_cast<std::size_t>(rank_v<T>));
  for (int i = 0; i < rank_v<T>; ++i) dims[static_cast<std::size_t>(i)] = t.dimension(i);
  return shape_string(dims);
}

template <DenseTensor A, DenseTensor B>
bool same_shape(const A& a, const B& b) {
  static_assert(rank_v<A> == rank_v<B>, "ddpm: tensors of different rank");
  for (int i = 0; i < rank_v<A>; ++i) {
    if (a.dimension(i) != b.dimension(i)) return false;
  }
  return true;
}

/// Throws ddpm::invalid_argument "fn: <b_name> has shape (..), but must match <a_name> (..)".
template <DenseTensor A, DenseTensor B>
void require_same_shape(const char* fn, const char* a_name, const A& a, const char* b_name, const B& b) {
  if (!same_shape(a, b)) {
    throw_invalid_argument(std::string(fn) + ": " + b_name + " has shape " + shape_string(b) +
                           ", but must have the shape of " + a_name + " " + shape_string(a));
  }
}

/// Throws unless the tensor has at least one element.
template <DenseTensor T>
void require_nonempty(const char* fn, const char* name, const T& t) {
  if (t.size() == 0) {
    throw_invalid_argument(std::string(fn) + ": " + name + " has shape " + shape_string(t) +
                           ", but must have at least one element");
  }
}

}  // namespace detail

/// The size of a transparent huge page on x86-64 and arm64 Linux (2 MiB).
inline constexpr std::size_t kHugePageBytes = std::size_t{1} << 21;
/// Buffers from this size on get the huge-page advice (smaller ones rarely hold a whole aligned huge page).
inline constexpr std::size_t kHugePageAdviceMinBytes = std::size_t{4} << 20;

/// Asks Linux to back the 2 MiB-aligned part of [data, data + bytes) with transparent huge pages
/// (madvise(MADV_HUGEPAGE)), so that first touching a large fresh buffer takes one page fault per 2 MiB
/// instead of one per 4 KiB: a 50 MB result of a returning kernel faulted for about 190 ms in 4 KiB pages,
/// 3 ms in huge pages (issue 13). Only advice: nothing happens below kHugePageAdviceMinBytes, on other
/// systems, or when the kernel's THP mode is "never"; the data is never changed. Call it on a buffer before
/// writing it first (glibc serves allocations above its mmap threshold with fresh, untouched pages).
inline void advise_huge_pages(void* data, std::size_t bytes) noexcept {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (data == nullptr || bytes < kHugePageAdviceMinBytes) return;
  const std::uintptr_t first = reinterpret_cast<std::uintptr_t>(data);
  const std::uintptr_t begin = (first + kHugePageBytes - 1) & ~(std::uintptr_t{kHugePageBytes} - 1);
  const std::uintptr_t end = (first + bytes) & ~(std::uintptr_t{kHugePageBytes} - 1);
  if (end > begin) (void)::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

/// advise_huge_pages on a tensor's buffer (for a caller's own large tensors; the library's returned tensors
/// and resized outputs get it already).
template <DenseTensor T>
void advise_huge_pages(T& tensor) noexcept {
  advise_huge_pages(const_cast<void*>(static_cast<const void*>(tensor.data())),
                    static_cast<std::size_t>(tensor.size()) * sizeof(scalar_t<T>));
}

/// The largest block retain_freed_memory accepts (glibc's mallopt takes an int).
inline constexpr std::size_t kMaxRetainedBlockBytes = std::size_t{1} << 30;

/// Process-wide opt-in (glibc only): keep freed blocks of up to `max_block_bytes` in the heap for reuse
/// instead of returning them to the kernel. By default glibc serves every allocation above 32 MiB with a
/// fresh mapping and unmaps it on free, so a loop that receives a fresh large result per call (`x =
/// q_sample(...)`, a returning sampler step) pays the kernel's zeroing of every page of it on each call:
/// (64,3,256,256) q_sample returning took 1.4-1.65x the time of the same kernel into a caller's tensor even
/// with huge pages (docs/benchmarks.md). After this call such blocks come from the heap (mallopt's
/// M_MMAP_THRESHOLD) and the heap's top is trimmed only beyond the same size (M_TRIM_THRESHOLD), so the next
/// result of the same size reuses pages that are already mapped. This is what PyTorch's benchmarks get from
/// MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_; the price is that freed memory stays with the process
/// (its RSS does not shrink after a large result is freed). It changes malloc for the whole process, so
/// the library never calls it itself. Returns whether it was applied (false on systems without glibc, or
/// when the allocator refuses, as under AddressSanitizer).
/// Throws ddpm::invalid_argument if max_block_bytes is outside [kHugePageBytes, kMaxRetainedBlockBytes].
inline bool retain_freed_memory(std::size_t max_block_bytes = std::size_t{256} << 20) {
  if (max_block_bytes < kHugePageBytes || max_block_bytes > kMaxRetainedBlockBytes) {
    detail::throw_invalid_argument("ddpm::retain_freed_memory: max_block_bytes is " +
                                   detail::number_string(static_cast<unsigned long long>(max_block_bytes)) +
                                   ", but must be in [" + detail::number_string(static_cast<unsigned long long>(kHugePageBytes)) +
                                   ", " + detail::number_string(static_cast<unsigned long long>(kMaxRetainedBlockBytes)) + "]");
  }
#if defined(__GLIBC__)
  const int bytes = static_cast<int>(max_block_bytes);
  return ::mallopt(M_MMAP_THRESHOLD, bytes) == 1 && ::mallopt(M_TRIM_THRESHOLD, bytes) == 1;
#else
  return false;
#endif
}

namespace detail {

/// Makes `out` ready to receive a result shaped like `like`: a plain Tensor is resized (a fresh buffer gets
/// the huge-page advice before it is written), a map must already have the shape.
template <MutableDenseTensor Out, DenseTensor Like>
void prepare_output(const char* fn, Out& out, const Like& like) {
  if constexpr (is_plain_tensor_v<std::remove_cvref_t<Out>>) {
    if (!same_shape(out, like)) {
      out.resize(like.dimensions());
      advise_huge_pages(out);
    }
  } else {
    require_same_shape(fn, "the input", like, "out", out);
  }
}

/// Number of elements per batch element (the product of all dimensions but the first).
template <DenseTensor T>
Eigen::Index per_sample_size(const T& t) {
  return t.dimension(0) == 0 ? 0 : t.size() / t.dimension(0);
}

// Elementwise work is split over OpenMP threads only when the library was built with OpenMP
// (DDPM_OPENMP) and the tensor is large enough to pay for the fork; each element is computed by the
// same expression either way, so the result does not depend on the thread count.
inline constexpr Eigen::Index kParallelGrain = Eigen::Index{1} << 15;

/// Runs f(k) for k in [0, chunks): on OpenMP threads when built with OpenMP and `total` elements are
/// worth a fork, else in order. Each chunk computes the same values either way.
template <class F>
void for_each_chunk(Eigen::Index chunks, Eigen::Index total, F&& f) {
#ifdef _OPENMP
  if (total >= 2 * kParallelGrain) {
#pragma omp parallel for schedule(static)
    for (Eigen::Index k = 0; k < chunks; ++k) f(k);
    return;
  }
#else
  (void)total;
#endif
  for (Eigen::Index k = 0; k < chunks; ++k) f(k);
}

/// One coefficient per batch element, or one shared by the whole batch (stride 0).
template <class S>
struct PerSample {
  const S* values;
  Eigen::Index stride;
  S operator[](Eigen::Index b) const { return values[b * stride]; }
};

/// out[b] = a[b] * x[b] + c[b] * y[b] for every batch element b, as one fused, vectorised pass. Batch
/// element b of y starts at y + b * y_stride (a model output with a learned-variance half has y_stride =
/// 2 * per_sample); x and out are contiguous. Shapes are validated by the caller; `out` may alias `x`, or
/// `y` when y_stride = per_sample.
template <class S>
void lincomb2_per_sample(S* out, PerSample<S> a, const S* x, PerSample<S> c, const S* y, Eigen::Index batch,
                         Eigen::Index per_sample, Eigen::Index y_stride = -1) {
  using Vec = Eigen::Array<S, Eigen::Dynamic, 1>;
  using In = Eigen::Map<const Vec, Eigen::Unaligned>;
  using Out = Eigen::Map<Vec, Eigen::Unaligned>;
  const Eigen::Index total = batch * per_sample;
  if (total == 0) return;
  if (y_stride < 0) y_stride = per_sample;
  if (per_sample < 16) {  // tiny samples (points in 2-D): a plain loop beats a map per sample
    for (Eigen::Index b = 0; b < batch; ++b) {
      const S ab = a[b], cb = c[b];
      const S* yb = y + b * (y_stride - per_sample);  // yb[i] is element i - b * per_sample of y's element b
      for (Eigen::Index i = b * per_sample; i < (b + 1) * per_sample; ++i) out[i] = ab * x[i] + cb * yb[i];
    }
    return;
  }
  // Work is cut into chunks of at most kParallelGrain elements that never straddle a batch element.
  const Eigen::Index chunks_per_sample = (per_sample + kParallelGrain - 1) / kParallelGrain;
  const Eigen::Index chunk = (per_sample + chunks_per_sample - 1) / chunks_per_sample;
  const Eigen::Index chunks = batch * chunks_per_sample;
  auto run_chunk = [&](Eigen::Index k) {
    const Eigen::Index b = k / chunks_per_sample;
    const Eigen::Index begin = b * per_sample + (k % chunks_per_sample) * chunk;
    const Eigen::Index end = std::min(begin + chunk, (b + 1) * per_sample);
    const Eigen::Index n = end - begin;
    Out(out + begin, n) = a[b] * In(x + begin, n) + c[b] * In(y + b * (y_stride - per_sample) + begin, n);
  };
  for_each_chunk(chunks, total, run_chunk);
}

}  // namespace detail
}  // namespace ddpm
