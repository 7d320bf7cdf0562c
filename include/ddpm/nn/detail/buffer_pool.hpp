// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// A pool of reusable, 64-byte aligned scratch buffers. A network asks for the same sizes in the same order
// on every forward pass, so after the first pass (at a given batch size) every request is served from the
// pool and nothing is allocated: the steady state of the sampling loop allocates no memory.

#include <algorithm>
#include <cstddef>
#include <new>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "ddpm/tensor.hpp"

namespace ddpm::nn::detail {

template <class S>
class BufferPool {
  struct Block {
    S* data = nullptr;
    Eigen::Index capacity = 0;
    bool in_use = false;
  };

 public:
  /// A buffer lent by the pool; it goes back to the pool when the handle is destroyed or released.
  class Buffer {
   public:
    Buffer() = default;
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    Buffer(Buffer&& other) noexcept { *this = std::move(other); }
    Buffer& operator=(Buffer&& other) noexcept {
      if (this != &other) {
        release();
        pool_ = std::exchange(other.pool_, nullptr);
        block_ = std::exchange(other.block_, std::size_t{0});
        data_ = std::exchange(other.data_, nullptr);
        size_ = std::exchange(other.size_, Eigen::Index{0});
      }
      return *this;
    }
    ~Buffer() { release(); }

    S* data() const { return data_; }
    Eigen::Index size() const { return size_; }
    void release() {
      if (pool_ != nullptr) pool_->blocks_[block_].in_use = false;
      pool_ = nullptr;
      data_ = nullptr;
      size_ = 0;
    }

   private:
    friend class BufferPool;
    BufferPool* pool_ = nullptr;
    std::size_t block_ = 0;
    S* data_ = nullptr;
    Eigen::Index size_ = 0;
  };

  BufferPool() = default;
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;
  ~BufferPool() {
    for (Block& b : blocks_) ::operator delete(b.data, std::align_val_t{kAlignment});
  }

  /// A buffer of at least n elements (uninitialised): the smallest free block that holds n, else a new one.
  Buffer acquire(Eigen::Index n) {
    n = std::max<Eigen::Index>(n, 1);
    std::size_t best = blocks_.size();
    for (std::size_t i = 0; i < blocks_.size(); ++i) {
      const Block& b = blocks_[i];
      if (!b.in_use && b.capacity >= n && (best == blocks_.size() || b.capacity < blocks_[best].capacity)) best = i;
    }
    if (best == blocks_.size()) {
      const Eigen::Index capacity = (n + kPad - 1) / kPad * kPad;
      void* p = ::operator new(static_cast<std::size_t>(capacity) * sizeof(S), std::align_val_t{kAlignment});
      ddpm::advise_huge_pages(p, static_cast<std::size_t>(capacity) * sizeof(S));  // before the first touch
      blocks_.push_back(Block{static_cast<S*>(p), capacity, false});
      ++allocations_;
    }
    Block& b = blocks_[best];
    b.in_use = true;
    Buffer buffer;
    buffer.pool_ = this;
    buffer.block_ = best;
    buffer.data_ = b.data;
    buffer.size_ = n;
    return buffer;
  }

  /// How many blocks the pool has allocated so far (constant in the steady state).
  std::size_t allocations() const { return allocations_; }

  /// Bytes held by the pool.
  std::size_t bytes() const {
    std::size_t total = 0;
    for (const Block& b : blocks_) total += static_cast<std::size_t>(b.capacity) * sizeof(S);
    return total;
  }

 private:
  static constexpr std::size_t kAlignment = 64;
  static constexpr Eigen::Index kPad = static_cast<Eigen::Index>(kAlignment / sizeof(S) > 0 ? kAlignment / sizeof(S) : 1);
  std::vector<Block> blocks_;
  std::size_t allocations_ = 0;
};

/// A growing, 64-byte aligned buffer for the packed operands of one thread's matrix products (a
/// Workspace holds one per thread slot). It only grows, so the steady state allocates nothing.
template <class S>
class PackingBuffer {
 public:
  PackingBuffer() = default;
  PackingBuffer(const PackingBuffer&) = delete;
  PackingBuffer& operator=(const PackingBuffer&) = delete;
  PackingBuffer(PackingBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)),
        capacity_(std::exchange(other.capacity_, Eigen::Index{0})),
        allocations_(std::exchange(other.allocations_, std::size_t{0})) {}
  PackingBuffer& operator=(PackingBuffer&& other) noexcept {
    if (this != &other) {
      free();
      data_ = std::exchange(other.data_, nullptr);
      capacity_ = std::exchange(other.capacity_, Eigen::Index{0});
      allocations_ = std::exchange(other.allocations_, std::size_t{0});
    }
    return *this;
  }
  ~PackingBuffer() { free(); }

  /// At least n values (their content is not kept when the buffer grows).
  S* reserve(Eigen::Index n) {
    if (n > capacity_) {
      free();
      const Eigen::Index capacity = (n + 15) / 16 * 16;
      data_ = static_cast<S*>(::operator new(static_cast<std::size_t>(capacity) * sizeof(S), std::align_val_t{64}));
      capacity_ = capacity;
      ++allocations_;
    }
    return data_;
  }
  std::size_t allocations() const { return allocations_; }
  std::size_t bytes() const { return static_cast<std::size_t>(capacity_) * sizeof(S); }

 private:
  void free() {
    if (data_ != nullptr) ::operator delete(data_, std::align_val_t{64});
    data_ = nullptr;
    capacity_ = 0;
  }
  S* data_ = nullptr;
  Eigen::Index capacity_ = 0;
  std::size_t allocations_ = 0;
};

}  // namespace ddpm::nn::detail
