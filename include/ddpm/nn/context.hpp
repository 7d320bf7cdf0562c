// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// nn::Context: what a forward pass needs besides the weights: the scratch buffers (a pool that is reused
// from one pass to the next) and, opt-in, Eigen's thread pool. Layers are const; all mutable state of a
// forward pass lives here, so one Context must not be used by two passes at the same time.

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>

#include <Eigen/Core>
#include <unsupported/Eigen/CXX11/ThreadPool>

#include "ddpm/error.hpp"
#include "ddpm/nn/detail/buffer_pool.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ddpm::nn {

template <class S>
class Context {
 public:
  using Buffer = typename detail::BufferPool<S>::Buffer;

  /// A context running on `num_threads` threads (the caller's thread plus num_threads - 1 workers).
  /// Throws ddpm::invalid_argument if num_threads < 1.
  explicit Context(int num_threads = 1) { set_num_threads(num_threads); }

  /// Threads used by the next forward pass: 1 runs everything on the caller's thread; n > 1 starts an
  /// Eigen::ThreadPool of n - 1 workers. Results do not depend on the thread count (each output element
  /// is computed by the same sequence of operations, only by a different thread).
  /// Throws ddpm::invalid_argument if n < 1.
  void set_num_threads(int n) {
    if (n < 1) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::Context::set_num_threads: n is " + std::to_string(n) +
                                           ", but must be >= 1");
    }
    if (n == num_threads_) return;
    pool_.reset();
    if (n > 1) pool_ = std::make_unique<Eigen::ThreadPool>(n - 1);
    num_threads_ = n;
  }
  int num_threads() const { return num_threads_; }

  /// A scratch buffer of n elements (uninitialised) from the pool.
  Buffer acquire(Eigen::Index n) { return buffers_->acquire(n); }

  /// Blocks the pool has allocated so far; constant once the passes repeat (the steady state).
  std::size_t allocations() const { return buffers_->allocations(); }
  /// Bytes of scratch memory held.
  std::size_t scratch_bytes() const { return buffers_->bytes(); }

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
  std::unique_ptr<detail::BufferPool<S>> buffers_ = std::make_unique<detail::BufferPool<S>>();
  std::unique_ptr<Eigen::ThreadPool> pool_;
  int num_threads_ = 0;
};

}  // namespace ddpm::nn
