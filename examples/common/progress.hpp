// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// A one-line terminal progress bar for the example programs (a sampler's reverse loop, a training run):
//
//   examples::ProgressBar bar("sampling", num_steps);
//   for (int i = 0; i < num_steps; ++i) { ...; bar.update(i + 1); }
//   bar.finish();
//
//   sampling [##########----------]  500/1000  41.7 it/s  ETA 12 s
//
// On a terminal the line is redrawn in place (at most ten times a second); when stderr is a file or a pipe
// only the final line is written, so logs stay readable.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <utility>

#include <unistd.h>

namespace examples {

class ProgressBar {
 public:
  /// A bar over `total` steps, drawn on stderr.
  ProgressBar(std::string label, long long total)
      : label_(std::move(label)),
        total_(std::max(total, 1LL)),
        interactive_(::isatty(STDERR_FILENO) == 1),
        start_(Clock::now()),
        last_draw_(start_) {}

  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;
  ~ProgressBar() { finish(); }

  /// Records that `done` of the total steps are complete; `note` (e.g. "loss 0.071") is shown after the rate.
  void update(long long done, std::string note = {}) {
    done_ = std::clamp(done, 0LL, total_);
    note_ = std::move(note);
    const Clock::time_point now = Clock::now();
    if (interactive_ && (now - last_draw_ >= std::chrono::milliseconds(100) || done_ == total_)) {
      last_draw_ = now;
      draw(false);
    }
  }

  /// Draws the final line and ends it (once; the destructor calls it too).
  void finish() {
    if (finished_) return;
    finished_ = true;
    draw(true);
  }

 private:
  using Clock = std::chrono::steady_clock;

  void draw(bool final) const {
    constexpr int width = 24;
    const double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    const double rate = seconds > 0 ? static_cast<double>(done_) / seconds : 0.0;
    const int filled = static_cast<int>(width * done_ / total_);
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.append(static_cast<std::size_t>(width - filled), '-');
    char tail[96];
    if (final) {
      std::snprintf(tail, sizeof tail, "%.1f s, %.1f it/s", seconds, rate);
    } else {
      const double eta = rate > 0 ? static_cast<double>(total_ - done_) / rate : 0.0;
      std::snprintf(tail, sizeof tail, "%.1f it/s  ETA %.0f s", rate, eta);
    }
    std::fprintf(stderr, "%s%s [%s] %lld/%lld  %s%s%s%s", interactive_ ? "\r" : "", label_.c_str(), bar.c_str(),
                 done_, total_, tail, note_.empty() ? "" : "  ", note_.c_str(),
                 final ? (interactive_ ? "\x1b[K\n" : "\n") : "\x1b[K");
    std::fflush(stderr);
  }

  std::string label_;
  long long total_;
  long long done_ = 0;
  std::string note_;
  bool interactive_;
  bool finished_ = false;
  Clock::time_point start_, last_draw_;
};

}  // namespace examples
