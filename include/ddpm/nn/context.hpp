// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// nn::Workspace (the older name nn::Context is kept as an alias): everything a pass through a network
// needs besides the weights. Layers hold weights only and are const during a pass; every per-pass buffer
// lives here:
//   - a pool of scratch buffers reused from one pass to the next (activations, im2col columns, Winograd
//     tiles, attention scores, and the activations a training pass keeps for backward: a layer's Saved),
//   - one GEMM packing buffer per thread slot (Eigen's GEMM packs its operands into these),
//   - a stack of feature maps kept across layers (a UNet's skip connections),
//   - and, opt-in, Eigen's thread pool.
// One workspace serves one pass at a time; two threads running the same (const) model each use their own.
// See docs/unet.md, "Forward and backward (the training protocol)".

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Core>
#include <unsupported/Eigen/CXX11/ThreadPool>

#include "ddpm/error.hpp"
#include "ddpm/nn/detail/buffer_pool.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ddpm::nn {

/// A non-owning view of a channel-major batch [channels][batch][height][width]. S may be const.
/// (nn/feature_map.hpp describes the layout and the conversions.)
template <class S>
struct FeatureMap {
  S* data = nullptr;
  Eigen::Index channels = 0, batch = 0, height = 0, width = 0;

  /// Pixels of one image (height * width).
  Eigen::Index pixels() const { return height * width; }
  /// Values of one channel across the batch (batch * height * width): the row length.
  Eigen::Index plane() const { return batch * height * width; }
  Eigen::Index size() const { return channels * plane(); }
  /// Channel c of image b: `pixels()` contiguous values.
  S* image_channel(Eigen::Index c, Eigen::Index b) const { return data + c * plane() + b * pixels(); }
  S* channel(Eigen::Index c) const { return data + c * plane(); }

  operator FeatureMap<const S>() const
    requires(!std::is_const_v<S>)
  {
    return {data, channels, batch, height, width};
  }
};

/// "[C, N, H, W]": a feature map's shape (channels, batch, height, width) for messages.
template <class S>
std::string map_shape_string(const FeatureMap<S>& m) {
  // Built piecewise: GCC 12 at -O3 raises a false -Wrestrict on "[" + std::string&&.
  std::string s = "[";
  for (const Eigen::Index v : {m.channels, m.batch, m.height, m.width}) {
    if (s.size() > 1) s += ", ";
    s += ddpm::detail::number_string(v);
  }
  s += "]";
  return s;
}

/// A channel-major batch that owns its storage (a buffer lent by a Workspace's pool).
template <class S>
struct Feature {
  typename detail::BufferPool<S>::Buffer storage;
  FeatureMap<S> map;

  FeatureMap<S> view() const { return map; }
  FeatureMap<const S> cview() const { return map; }
};

template <class S>
class Workspace {
 public:
  using Buffer = typename detail::BufferPool<S>::Buffer;

  /// A workspace running on `num_threads` threads (the caller's thread plus num_threads - 1 workers).
  /// Throws ddpm::invalid_argument if num_threads < 1 or num_threads > max_num_threads().
  explicit Workspace(int num_threads = 1) { set_num_threads(num_threads); }

  /// Threads used by the next pass: 1 runs everything on the caller's thread; n > 1 starts an
  /// Eigen::ThreadPool of n - 1 workers. Results do not depend on the thread count (each output element
  /// is computed by the same sequence of operations, only by a different thread).
  /// Throws ddpm::invalid_argument if n < 1 or n > max_num_threads().
  void set_num_threads(int n) {
    if (n < 1 || n > max_num_threads()) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::Workspace::set_num_threads: n is " + ddpm::detail::number_string(n) +
                                           ", but must be in [1, " + ddpm::detail::number_string(max_num_threads()) +
                                           "] (max_num_threads(): 4 x hardware_concurrency, at least 8)");
    }
    if (n == num_threads_) return;
    pool_.reset();
    if (n > 1) pool_ = std::make_unique<Eigen::ThreadPool>(n - 1);
    num_threads_ = n;
    packing_.resize(static_cast<std::size_t>(n));
  }
  int num_threads() const { return num_threads_; }

  /// The largest thread count set_num_threads accepts: 4 x std::thread::hardware_concurrency(), and at least 8
  /// (hardware_concurrency may report 0). More threads than that only contend for the cores, and a huge count
  /// would abort or hang inside Eigen's thread pool.
  static int max_num_threads() {
    const unsigned hw = std::thread::hardware_concurrency();
    return static_cast<int>(std::max<unsigned long>(8, 4ul * std::min(hw, 1u << 20)));
  }

  /// A scratch buffer of n elements (uninitialised) from the pool; it returns to the pool when the handle
  /// is destroyed or released.
  Buffer acquire(Eigen::Index n) { return buffers_->acquire(n); }

  /// The GEMM packing buffer of thread slot `thread` (in [0, num_threads()), the index parallel_for
  /// passes), grown to hold at least n values. Only that thread may use it until the product is done.
  S* packing(int thread, Eigen::Index n) { return packing_[static_cast<std::size_t>(thread)].reserve(n); }
  /// The packing buffers as detail::gemm takes them.
  detail::PackingBuffer<S>& packing_buffer(int thread) { return packing_[static_cast<std::size_t>(thread)]; }

  /// A stack of feature maps kept across layers (UNet2D's skip connections); its capacity is reused.
  std::vector<Feature<S>>& feature_stack() { return stack_; }

  /// Blocks allocated so far (scratch pool and packing buffers); constant once the passes repeat.
  std::size_t allocations() const {
    std::size_t n = buffers_->allocations();
    for (const auto& p : packing_) n += p.allocations();
    return n;
  }
  /// Bytes of scratch memory held (pool and packing buffers).
  std::size_t scratch_bytes() const {
    std::size_t n = buffers_->bytes();
    for (const auto& p : packing_) n += p.bytes();
    return n;
  }

  /// Runs f(begin, end, thread) over [0, count) cut into num_threads() contiguous ranges, one per thread,
  /// and returns when all are done. `thread` is in [0, num_threads()). f must not throw.
  template <class F>
  void parallel_for(Eigen::Index count, F&& f) {
    const int tasks = static_cast<int>(std::min<Eigen::Index>(num_threads_, count));
    if (tasks <= 1) {
      if (count > 0) f(Eigen::Index{0}, count, 0);
      return;
    }
    using Fn = std::remove_reference_t<F>;
    struct Job {
      Fn* f;
      Eigen::Index count;
      int tasks;
      std::atomic<int> remaining;
      void run(int i) {
        const Eigen::Index begin = count * i / tasks, end = count * (i + 1) / tasks;
        (*f)(begin, end, i);
      }
    } job{&f, count, tasks, {tasks - 1}};
#ifdef _OPENMP
    // Built with OpenMP, Eigen would cut each thread's GEMM over OpenMP threads again: one level is enough.
    struct SingleOpenMPThread {
      int saved = omp_get_max_threads();
      SingleOpenMPThread() { omp_set_num_threads(1); }
      ~SingleOpenMPThread() { omp_set_num_threads(saved); }
    } single;
#endif
    for (int i = 1; i < tasks; ++i) {
      Job* j = &job;
      pool_->Schedule([j, i] {
#ifdef _OPENMP
        omp_set_num_threads(1);
#endif
        j->run(i);
        j->remaining.fetch_sub(1, std::memory_order_acq_rel);
      });
    }
    job.run(0);
    // The workers are busy on their own cores, so the caller spins rather than sleeping: a wake-up through
    // a condition variable costs more than most of the parallel regions of a small network.
    for (int spins = 0; job.remaining.load(std::memory_order_acquire) != 0; ++spins) {
      if (spins > 64) std::this_thread::yield();
    }
  }

 private:
  // Declared first so that it is destroyed last: the buffers below hand their blocks back to it.
  std::unique_ptr<detail::BufferPool<S>> buffers_ = std::make_unique<detail::BufferPool<S>>();
  std::vector<Feature<S>> stack_;
  std::vector<detail::PackingBuffer<S>> packing_;
  std::unique_ptr<Eigen::ThreadPool> pool_;
  int num_threads_ = 0;
};

/// The workspace's older name (every layer takes a Workspace; Context<S> is the same type).
template <class S>
using Context = Workspace<S>;

}  // namespace ddpm::nn
