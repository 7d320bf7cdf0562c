// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// How the digits demo measures its own samples (examples/train_digits): a k-nearest-neighbour classifier
// fitted on real digits labels the generated ones, and each sample's distance to its nearest training image
// is set against the typical distance between two real digits, so that copies of the training set show.
//
//   auto data  = ddpm::io::load_digits<float>(path);
//   auto split = examples::split_digits(data.labels, 0.2, /*seed=*/0);        // stratified 80/20
//   examples::KnnClassifier<float> knn(examples::take_images(data.images, split.train),
//                                      examples::take_labels(data.labels, split.train), /*k=*/3);
//   double held_out = knn.accuracy(examples::take_images(data.images, split.held_out),
//                                  examples::take_labels(data.labels, split.held_out));
//   double hit_rate = examples::fraction_classified_as(knn, samples, requested_labels);
//   auto nearest = examples::nearest_neighbours(samples, train_images);     // distance to the training set
//   double typical = examples::median_pairwise_distance(train_images);      // between two real digits
//
// All distances are Euclidean over every pixel of an image (any C x H x W, so 8x8 and upsampled 16x16 both
// work), in the tensors' own units (for [-1, 1] digits, one grey level is 1/8). Everything is computed in
// double and is deterministic: ties break by the smaller index, never by memory order or threads.

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/error.hpp"
#include "ddpm/tensor.hpp"

namespace examples {

namespace detail {

inline std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

template <class S>
Eigen::Index image_size(const ddpm::Tensor<S, 4>& images) {
  return images.dimension(1) * images.dimension(2) * images.dimension(3);
}

template <class S>
void check_same_image_shape(const char* fn, const ddpm::Tensor<S, 4>& a, const char* a_name,
                            const ddpm::Tensor<S, 4>& b, const char* b_name) {
  for (int d = 1; d < 4; ++d) {
    if (a.dimension(d) != b.dimension(d)) {
      ddpm::detail::throw_invalid_argument(std::string(fn) + ": " + a_name + " has shape " +
                                           ddpm::detail::shape_string(a) + " and " + b_name + " has shape " +
                                           ddpm::detail::shape_string(b) + ", but their images must match");
    }
  }
}

template <class S>
double squared_distance(const S* a, const S* b, Eigen::Index d) {
  double sum = 0;
  for (Eigen::Index i = 0; i < d; ++i) {
    const double diff = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    sum += diff * diff;
  }
  return sum;
}

}  // namespace detail

/// The median of `values` (the mean of the two middle values for an even count).
/// Throws ddpm::invalid_argument if values is empty.
inline double median(std::vector<double> values) {
  if (values.empty()) ddpm::detail::throw_invalid_argument("examples::median: values is empty, but must not be");
  const std::size_t mid = values.size() / 2;
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(mid), values.end());
  const double upper = values[mid];
  if (values.size() % 2 == 1) return upper;
  const double lower = *std::max_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(mid));
  return 0.5 * (lower + upper);
}

/// A train / held-out partition: indices into the data set, each list ascending, disjoint, together all.
struct DigitSplit {
  std::vector<int> train;
  std::vector<int> held_out;
};

/// A deterministic stratified split: within each class, its indices are shuffled (Fisher-Yates driven by
/// splitmix64 seeded with `seed`, so the result is the same on every platform and standard library) and
/// round(held_out_fraction * class count) of them are held out; so each class keeps its share in both parts.
/// Throws ddpm::invalid_argument if held_out_fraction is outside [0, 1] or a label is negative.
inline DigitSplit split_digits(const std::vector<int>& labels, double held_out_fraction = 0.2, std::uint64_t seed = 0) {
  if (!(held_out_fraction >= 0.0 && held_out_fraction <= 1.0)) {
    ddpm::detail::throw_invalid_argument("examples::split_digits: held_out_fraction is " +
                                         std::to_string(held_out_fraction) + ", but must be in [0, 1]");
  }
  int classes = 0;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0) {
      ddpm::detail::throw_invalid_argument("examples::split_digits: labels[" + std::to_string(i) + "] is " +
                                           std::to_string(labels[i]) + ", but must be >= 0");
    }
    classes = std::max(classes, labels[i] + 1);
  }
  std::vector<std::vector<int>> by_class(static_cast<std::size_t>(classes));
  for (std::size_t i = 0; i < labels.size(); ++i) by_class[static_cast<std::size_t>(labels[i])].push_back(int(i));
  std::uint64_t state = seed;
  DigitSplit split;
  for (auto& members : by_class) {
    for (std::size_t i = members.size(); i > 1; --i) {
      // 64 random bits modulo i: a bias of at most i / 2^64, far below anything measurable here.
      const auto j = static_cast<std::size_t>(detail::splitmix64(state) % i);
      std::swap(members[i - 1], members[j]);
    }
    const auto held = static_cast<std::size_t>(std::llround(held_out_fraction * static_cast<double>(members.size())));
    split.held_out.insert(split.held_out.end(), members.begin(), members.begin() + static_cast<std::ptrdiff_t>(held));
    split.train.insert(split.train.end(), members.begin() + static_cast<std::ptrdiff_t>(held), members.end());
  }
  std::sort(split.train.begin(), split.train.end());
  std::sort(split.held_out.begin(), split.held_out.end());
  return split;
}

/// The images at `indices`, in that order: out[i] = images[indices[i]].
/// Throws ddpm::invalid_argument if an index is outside [0, N).
template <std::floating_point S>
ddpm::Tensor<S, 4> take_images(const ddpm::Tensor<S, 4>& images, const std::vector<int>& indices) {
  const Eigen::Index d = detail::image_size(images);
  ddpm::Tensor<S, 4> out(static_cast<Eigen::Index>(indices.size()), images.dimension(1), images.dimension(2),
                         images.dimension(3));
  for (std::size_t i = 0; i < indices.size(); ++i) {
    if (indices[i] < 0 || indices[i] >= images.dimension(0)) {
      ddpm::detail::throw_invalid_argument("examples::take_images: indices[" + std::to_string(i) + "] is " +
                                           std::to_string(indices[i]) + ", but must be in [0, " +
                                           std::to_string(images.dimension(0)) + ")");
    }
    std::copy_n(images.data() + indices[i] * d, d, out.data() + static_cast<Eigen::Index>(i) * d);
  }
  return out;
}

/// The labels at `indices`, in that order. Throws ddpm::invalid_argument if an index is out of range.
inline std::vector<int> take_labels(const std::vector<int>& labels, const std::vector<int>& indices) {
  std::vector<int> out;
  out.reserve(indices.size());
  for (std::size_t i = 0; i < indices.size(); ++i) {
    if (indices[i] < 0 || static_cast<std::size_t>(indices[i]) >= labels.size()) {
      ddpm::detail::throw_invalid_argument("examples::take_labels: indices[" + std::to_string(i) + "] is " +
                                           std::to_string(indices[i]) + ", but must be in [0, " +
                                           std::to_string(labels.size()) + ")");
    }
    out.push_back(labels[static_cast<std::size_t>(indices[i])]);
  }
  return out;
}

/// k-nearest-neighbour classifier, Euclidean over the pixels. predict() takes the k training images nearest
/// to the query (ties in distance: the smaller training index first) and returns the class with the most
/// votes among them; a tie in votes goes to the tied class whose member ranks nearest.
template <std::floating_point S>
class KnnClassifier {
 public:
  /// Fits (stores) `images` [N, C, H, W] with `labels` (N of them, each >= 0).
  /// Throws ddpm::invalid_argument if N is 0, labels.size() != N, a label is negative, or k is outside [1, N].
  KnnClassifier(const ddpm::Tensor<S, 4>& images, std::vector<int> labels, int k)
      : train_(images), labels_(std::move(labels)), k_(k) {
    const Eigen::Index n = images.dimension(0);
    if (n < 1) ddpm::detail::throw_invalid_argument("examples::KnnClassifier: images holds 0 images, but needs >= 1");
    if (static_cast<Eigen::Index>(labels_.size()) != n) {
      ddpm::detail::throw_invalid_argument("examples::KnnClassifier: labels has " + std::to_string(labels_.size()) +
                                           " entries, but images holds " + std::to_string(n));
    }
    if (k < 1 || k > n) {
      ddpm::detail::throw_invalid_argument("examples::KnnClassifier: k is " + std::to_string(k) +
                                           ", but must be in [1, " + std::to_string(n) + "]");
    }
    for (std::size_t i = 0; i < labels_.size(); ++i) {
      if (labels_[i] < 0) {
        ddpm::detail::throw_invalid_argument("examples::KnnClassifier: labels[" + std::to_string(i) + "] is " +
                                             std::to_string(labels_[i]) + ", but must be >= 0");
      }
      classes_ = std::max(classes_, labels_[i] + 1);
    }
  }

  int k() const noexcept { return k_; }

  /// The predicted class of each image of `images` [M, C, H, W] (the same C, H, W as the training images).
  /// Throws ddpm::invalid_argument if the image shapes differ.
  std::vector<int> predict(const ddpm::Tensor<S, 4>& images) const {
    detail::check_same_image_shape("examples::KnnClassifier::predict", images, "images", train_, "the training set");
    const Eigen::Index d = detail::image_size(images);
    const Eigen::Index n = train_.dimension(0);
    std::vector<std::pair<double, int>> dist(static_cast<std::size_t>(n));
    std::vector<int> votes(static_cast<std::size_t>(classes_));
    std::vector<int> out;
    out.reserve(static_cast<std::size_t>(images.dimension(0)));
    for (Eigen::Index q = 0; q < images.dimension(0); ++q) {
      for (Eigen::Index i = 0; i < n; ++i) {
        dist[static_cast<std::size_t>(i)] = {detail::squared_distance(images.data() + q * d, train_.data() + i * d, d),
                                             static_cast<int>(i)};
      }
      std::partial_sort(dist.begin(), dist.begin() + k_, dist.end());
      std::fill(votes.begin(), votes.end(), 0);
      for (int j = 0; j < k_; ++j) ++votes[static_cast<std::size_t>(labels_[static_cast<std::size_t>(dist[j].second)])];
      const int best_votes = *std::max_element(votes.begin(), votes.end());
      int best = -1;
      for (int j = 0; j < k_ && best < 0; ++j) {
        const int label = labels_[static_cast<std::size_t>(dist[j].second)];
        if (votes[static_cast<std::size_t>(label)] == best_votes) best = label;
      }
      out.push_back(best);
    }
    return out;
  }

  /// The fraction of `images` whose predicted class equals `labels`.
  /// Throws ddpm::invalid_argument if the counts differ, there are no images, or the shapes differ.
  double accuracy(const ddpm::Tensor<S, 4>& images, const std::vector<int>& labels) const {
    if (static_cast<Eigen::Index>(labels.size()) != images.dimension(0) || labels.empty()) {
      ddpm::detail::throw_invalid_argument("examples::KnnClassifier::accuracy: labels has " +
                                           std::to_string(labels.size()) + " entries and images holds " +
                                           std::to_string(images.dimension(0)) + ", but both must be the same, >= 1");
    }
    const std::vector<int> predicted = predict(images);
    std::size_t right = 0;
    for (std::size_t i = 0; i < labels.size(); ++i) right += predicted[i] == labels[i] ? 1 : 0;
    return static_cast<double>(right) / static_cast<double>(labels.size());
  }

 private:
  ddpm::Tensor<S, 4> train_;
  std::vector<int> labels_;
  int k_;
  int classes_ = 0;
};

/// The fraction of `samples` that `classifier` labels as the class each was asked for: mean of
/// [predict(samples)[i] == requested[i]]. Throws ddpm::invalid_argument as KnnClassifier::accuracy.
template <std::floating_point S>
double fraction_classified_as(const KnnClassifier<S>& classifier, const ddpm::Tensor<S, 4>& samples,
                              const std::vector<int>& requested) {
  return classifier.accuracy(samples, requested);
}

/// A sample's nearest reference image: its index and the Euclidean distance to it.
struct Neighbour {
  int index = -1;
  double distance = 0;
};

/// For each of `samples` [M, C, H, W], the nearest image of `reference` [N, C, H, W] (ties: the smaller
/// index) and its Euclidean distance. Throws ddpm::invalid_argument if reference is empty or shapes differ.
template <std::floating_point S>
std::vector<Neighbour> nearest_neighbours(const ddpm::Tensor<S, 4>& samples, const ddpm::Tensor<S, 4>& reference) {
  detail::check_same_image_shape("examples::nearest_neighbours", samples, "samples", reference, "reference");
  if (reference.dimension(0) < 1) {
    ddpm::detail::throw_invalid_argument("examples::nearest_neighbours: reference holds 0 images, but needs >= 1");
  }
  const Eigen::Index d = detail::image_size(samples);
  std::vector<Neighbour> out(static_cast<std::size_t>(samples.dimension(0)));
  for (Eigen::Index q = 0; q < samples.dimension(0); ++q) {
    double best = std::numeric_limits<double>::infinity();
    int best_index = -1;
    for (Eigen::Index i = 0; i < reference.dimension(0); ++i) {
      const double s = detail::squared_distance(samples.data() + q * d, reference.data() + i * d, d);
      if (s < best) {
        best = s;
        best_index = static_cast<int>(i);
      }
    }
    out[static_cast<std::size_t>(q)] = {best_index, std::sqrt(best)};
  }
  return out;
}

/// The median Euclidean distance between two distinct images of `images` (over all N (N - 1) / 2 pairs
/// i < j): the typical distance between two real digits, against which nearest_neighbours distances of
/// generated samples read (a sample far below it is close to a copy). 1797 digits: 1.6 M pairs, ~0.1 s.
/// Throws ddpm::invalid_argument if images holds fewer than 2 images.
template <std::floating_point S>
double median_pairwise_distance(const ddpm::Tensor<S, 4>& images) {
  const Eigen::Index n = images.dimension(0);
  if (n < 2) {
    ddpm::detail::throw_invalid_argument("examples::median_pairwise_distance: images holds " + std::to_string(n) +
                                         " images, but needs >= 2");
  }
  const Eigen::Index d = detail::image_size(images);
  std::vector<double> dist;
  dist.reserve(static_cast<std::size_t>(n * (n - 1) / 2));
  for (Eigen::Index i = 0; i < n; ++i) {
    for (Eigen::Index j = i + 1; j < n; ++j) {
      dist.push_back(std::sqrt(detail::squared_distance(images.data() + i * d, images.data() + j * d, d)));
    }
  }
  return median(std::move(dist));
}

}  // namespace examples
