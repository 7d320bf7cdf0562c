// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

#include <algorithm>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "ddpm/nn/context.hpp"

TEST_CASE("Context::parallel_for visits every index once, in contiguous ranges", "[nn][context]") {
  // The workers only record what they were given (under a mutex); every assertion runs on the main thread,
  // since Catch2 v2's assertion macros are not thread-safe (a failure on a worker would crash, not report).
  struct Call {
    Eigen::Index begin, end;
    int thread;
  };
  for (int threads : {1, 2, 3, 5}) {
    ddpm::nn::Context<float> ctx(threads);
    CHECK(ctx.num_threads() == threads);
    for (Eigen::Index count : {0, 1, 2, 7, 64, 1001}) {
      INFO(threads << " threads, count " << count);
      std::mutex mutex;
      std::vector<Call> calls;
      ctx.parallel_for(count, [&](Eigen::Index begin, Eigen::Index end, int thread) {
        const std::lock_guard<std::mutex> lock(mutex);
        calls.push_back({begin, end, thread});
      });
      CHECK(static_cast<Eigen::Index>(calls.size()) == std::min<Eigen::Index>(threads, count));
      std::vector<int> seen(static_cast<std::size_t>(count), 0);
      std::vector<int> thread_seen(static_cast<std::size_t>(threads), 0);
      for (const Call& c : calls) {
        CHECK(c.begin < c.end);
        CHECK(c.begin >= 0);
        CHECK(c.end <= count);
        REQUIRE(c.thread >= 0);
        REQUIRE(c.thread < threads);
        thread_seen[static_cast<std::size_t>(c.thread)] += 1;
        for (Eigen::Index i = std::max<Eigen::Index>(c.begin, 0); i < std::min(c.end, count); ++i) {
          seen[static_cast<std::size_t>(i)] += 1;
        }
      }
      for (int v : seen) CHECK(v == 1);
      for (int v : thread_seen) CHECK(v <= 1);  // one range per thread
    }
  }
}

TEST_CASE("Context reuses its buffers: the same requests allocate nothing the second time", "[nn][context]") {
  ddpm::nn::Context<double> ctx;
  auto pass = [&] {
    auto a = ctx.acquire(1000);
    auto b = ctx.acquire(10);
    a.release();
    auto c = ctx.acquire(500);  // fits in a's block
    auto d = ctx.acquire(2000);
    REQUIRE(c.data() != b.data());
    REQUIRE(d.size() == 2000);
    c.data()[499] = 1.0;  // writable over the whole request
  };
  pass();
  const std::size_t after_first = ctx.allocations();
  CHECK(after_first == 3);
  pass();
  pass();
  CHECK(ctx.allocations() == after_first);
  CHECK(ctx.scratch_bytes() >= (1000 + 10 + 2000) * sizeof(double));
}

TEST_CASE("Context rejects a thread count below 1", "[nn][context]") {
  REQUIRE_THROWS_AS(ddpm::nn::Context<float>(0), ddpm::invalid_argument);
  ddpm::nn::Context<float> ctx(2);
  REQUIRE_THROWS_AS(ctx.set_num_threads(-1), ddpm::invalid_argument);
  ctx.set_num_threads(1);
  CHECK(ctx.num_threads() == 1);
}

TEST_CASE("Context refuses a thread count above max_num_threads()", "[nn][context]") {
  // A huge count used to start that many Eigen threads (an abort or a hang, issue 13).
  const int cap = ddpm::nn::Workspace<float>::max_num_threads();
  const unsigned hw = std::thread::hardware_concurrency();
  CHECK(cap >= 8);
  CHECK(cap >= 4 * static_cast<int>(hw));
  ddpm::nn::Context<float> ctx(1);
  for (int n : {cap + 1, 1 << 20, std::numeric_limits<int>::max()}) {
    INFO("n = " << n);
    REQUIRE_THROWS_AS(ctx.set_num_threads(n), ddpm::invalid_argument);
    REQUIRE_THROWS_WITH(ctx.set_num_threads(n), Catch::Contains("set_num_threads") &&
                                                    Catch::Contains(std::to_string(n)) &&
                                                    Catch::Contains(std::to_string(cap)));
    CHECK(ctx.num_threads() == 1);
  }
  REQUIRE_THROWS_AS(ddpm::nn::Context<double>(std::numeric_limits<int>::max()), ddpm::invalid_argument);
}
