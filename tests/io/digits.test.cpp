// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// The digits loader of ddpm/io/digits.hpp and the evaluation helpers of examples/common/digits_eval.hpp.
// Independent references: gzip files written here through zlib's own deflate (valid ones, and corrupt ones
// cut, flipped or padded byte by byte); the scaling x = level / 16 * 2 - 1 written out; closed-form
// upsampling (bilinear interpolation reproduces a bilinear function exactly, clamped at the borders as
// PyTorch's align_corners=False does; upsample_bilinear was confirmed once against torch 1.13's
// F.interpolate(mode="bilinear", align_corners=False) on a 3 x 5 image at factors 2 and 3, max |diff| 3e-16);
// hand-placed points whose neighbours and distances are known; and, when sklearn's file is on the machine,
// its row and class counts as `zcat digits.csv.gz | awk -F,` counts them and the published accuracy of
// nearest-neighbour classification on these digits (about 98%; we require >= 95%).

#include <catch2/catch.hpp>

#include <zlib.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "../../examples/common/digits_eval.hpp"
#include "ddpm/io/digits.hpp"

namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("ddpm_digits_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

// One gzip member (RFC 1952) through zlib's deflate.
std::string gzip(const std::string& text) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&zs, static_cast<uLong>(text.size())) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  zs.avail_in = static_cast<uInt>(text.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// Row r: pixel p has level (7 r + p) % 17, label r % 10.
int level(int r, int p) { return (7 * r + p) % 17; }
std::string csv_row(int r) {
  std::string s;
  for (int p = 0; p < 64; ++p) s += std::to_string(level(r, p)) + ",";
  return s + std::to_string(r % 10);
}
std::string csv(int rows, const std::string& eol = "\n") {
  std::string s;
  for (int r = 0; r < rows; ++r) s += csv_row(r) + eol;
  return s;
}

// The message of the ddpm::format_error that f throws (fails the test if it throws nothing or another type).
std::string format_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ddpm::format_error& e) {
    return e.what();
  } catch (...) {
    FAIL("threw something other than ddpm::format_error");
  }
  FAIL("threw nothing");
  return {};
}

template <class S>
void check_rows(const ddpm::io::Digits<S>& d, int rows) {
  REQUIRE(d.size() == rows);
  REQUIRE(d.images.dimension(1) == 1);
  REQUIRE(d.images.dimension(2) == 8);
  REQUIRE(d.images.dimension(3) == 8);
  REQUIRE(d.labels.size() == static_cast<std::size_t>(rows));
  for (int r = 0; r < rows; ++r) {
    CHECK(d.labels[static_cast<std::size_t>(r)] == r % 10);
    for (int p = 0; p < 64; ++p) {
      // Exact: level / 8 - 1 is a short binary fraction in float and double alike.
      CHECK(d.images(r, 0, p / 8, p % 8) == static_cast<S>(level(r, p) / 16.0 * 2.0 - 1.0));
    }
  }
}

// sklearn's file, where this machine has it: $DDPM_DIGITS, Debian's python3-sklearn, scripts/get-digits.sh's cache.
std::string real_digits_path() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("DDPM_DIGITS")) candidates.emplace_back(env);
  candidates.emplace_back(ddpm::io::kSklearnDigitsPath);
  candidates.emplace_back(std::string(DDPM_TEST_DATA_DIR) + "/../../build/data/digits.csv.gz");
  for (const auto& c : candidates) {
    if (fs::is_regular_file(c)) return c;
  }
  return {};
}

}  // namespace

TEMPLATE_TEST_CASE("load_digits reads gzip and plain CSV, scaled to [-1, 1]", "[io][digits]", float, double) {
  using S = TestType;
  TempDir dir;
  SECTION("gzip") {
    write_file(dir.file("d.csv.gz"), gzip(csv(23)));
    check_rows(ddpm::io::load_digits<S>(dir.file("d.csv.gz")), 23);
  }
  SECTION("plain text, CRLF, no final newline") {
    std::string text = csv(5, "\r\n");
    text.resize(text.size() - 2);
    write_file(dir.file("d.csv"), text);
    check_rows(ddpm::io::load_digits<S>(dir.file("d.csv")), 5);
  }
  SECTION("level 0 is -1, 8 is 0, 16 is +1; the cap admits exactly max_rows rows") {
    std::string text;
    for (int p = 0; p < 64; ++p) text += (p == 1 ? "8" : p == 2 ? "16" : "0") + std::string(",");
    text += "9\n";
    write_file(dir.file("one.csv.gz"), gzip(text));
    const auto d = ddpm::io::load_digits<S>(dir.file("one.csv.gz"), 1);
    REQUIRE(d.size() == 1);
    CHECK(d.images(0, 0, 0, 0) == S(-1));
    CHECK(d.images(0, 0, 0, 1) == S(0));
    CHECK(d.images(0, 0, 0, 2) == S(1));
    CHECK(d.labels[0] == 9);
  }
  SECTION("parse_digits_csv on text in memory") { check_rows(ddpm::io::parse_digits_csv<S>(csv(3)), 3); }
}

TEST_CASE("parse_digits_csv rejects malformed rows, naming the line and the value", "[io][digits]") {
  const std::string good = csv_row(0) + "\n";
  auto parse = [](const std::string& text, std::size_t max_rows = ddpm::io::kDigitsDefaultMaxRows) {
    return [text, max_rows] { (void)ddpm::io::parse_digits_csv<float>(text, "f.csv", max_rows); };
  };
  auto with_value = [](int column, const std::string& v) {  // row 1 with value `column` (1-based) replaced
    std::string s;
    for (int c = 1; c <= 65; ++c)
      s += (c == column ? v : c == 65 ? "1" : std::to_string(level(1, c - 1))) + (c < 65 ? "," : "");
    return s + "\n";
  };
  std::string m;
  m = format_error_of(parse(good + with_value(5, "17")));
  CHECK_THAT(m, Catch::Contains("f.csv line 2") && Catch::Contains("pixel 5 is 17") && Catch::Contains("[0, 16]"));
  m = format_error_of(parse(good + good + with_value(65, "10")));
  CHECK_THAT(m, Catch::Contains("line 3") && Catch::Contains("label (value 65) is 10"));
  for (const std::string bad : {"a", "-1", "+1", "1.0", " 3", "3 ", "016", "", "1e1"}) {
    m = format_error_of(parse(with_value(7, bad)));
    CHECK_THAT(m, Catch::Contains("line 1") && Catch::Contains("value 7 is \"" + bad + "\"") &&
                      Catch::Contains("decimal integer"));
  }
  m = format_error_of(parse(good + good.substr(0, good.rfind(',')) + "\n"));  // 64 values
  CHECK_THAT(m, Catch::Contains("line 2") && Catch::Contains("has 64 values"));
  m = format_error_of(parse(csv_row(0) + ",3\n"));  // 66 values
  CHECK_THAT(m, Catch::Contains("line 1") && Catch::Contains("more than 65 values") && Catch::Contains("\"3\""));
  m = format_error_of(parse(good + "\n" + good));
  CHECK_THAT(m, Catch::Contains("line 2") && Catch::Contains("empty line"));
  m = format_error_of(parse(csv(3), 2));
  CHECK_THAT(m, Catch::Contains("line 3") && Catch::Contains("more than max_rows = 2"));
  m = format_error_of(parse(""));
  CHECK_THAT(m, Catch::Contains("holds no rows"));
  m = format_error_of(parse(with_value(3, std::string("\x01\xff", 2))));
  CHECK_THAT(m, Catch::Contains("\"\\x01\\xff\""));
  REQUIRE_THROWS_AS(ddpm::io::parse_digits_csv<float>(good, "f", 0), ddpm::invalid_argument);
}

TEST_CASE("load_digits rejects corrupt, truncated, padded and oversized gzip files", "[io][digits]") {
  TempDir dir;
  const std::string z = gzip(csv(40));
  auto load = [&](const std::string& bytes, std::size_t max_rows = ddpm::io::kDigitsDefaultMaxRows) {
    write_file(dir.file("x.gz"), bytes);
    return format_error_of([&] { (void)ddpm::io::load_digits<double>(dir.file("x.gz"), max_rows); });
  };
  CHECK_THAT(load(z.substr(0, z.size() - 4)), Catch::Contains("truncated"));  // no length field
  CHECK_THAT(load(z.substr(0, z.size() / 2)), Catch::Contains("truncated"));  // cut inside the deflate data
  CHECK_THAT(load(z.substr(0, 2)), Catch::Contains("truncated"));             // the magic bytes alone
  std::string bad_crc = z;
  bad_crc[bad_crc.size() - 6] = static_cast<char>(bad_crc[bad_crc.size() - 6] ^ 0x10);  // CRC-32 field
  CHECK_THAT(load(bad_crc), Catch::Contains("corrupt gzip"));
  std::string bad_data = z;
  bad_data[12] = static_cast<char>(bad_data[12] ^ 0xff);
  CHECK_THROWS_AS(ddpm::io::load_digits<double>((write_file(dir.file("y.gz"), bad_data), dir.file("y.gz"))),
                  ddpm::format_error);
  CHECK_THAT(load(z + "junk"), Catch::Contains("4 bytes follow the gzip stream"));
  CHECK_THAT(load(z, 3), Catch::Contains("decompresses to more than"));  // 40 rows under a cap of 3
  CHECK_THAT(load(gzip(csv(2) + "1,2,3\n")), Catch::Contains("line 3"));
  CHECK_THAT(format_error_of([&] { (void)ddpm::io::load_digits<float>(dir.file("missing.gz")); }),
             Catch::Contains("cannot open"));
  REQUIRE_THROWS_AS(ddpm::io::load_digits<float>(dir.file("x.gz"), 0), ddpm::invalid_argument);
}

TEMPLATE_TEST_CASE("upsample_nearest and upsample_bilinear", "[io][digits]", float, double) {
  using S = TestType;
  ddpm::Tensor<S, 4> x(2, 1, 3, 4);
  for (int n = 0; n < 2; ++n)
    for (int y = 0; y < 3; ++y)
      for (int c = 0; c < 4; ++c) x(n, 0, y, c) = static_cast<S>((n + 1) * (y + 1) * (c + 2));
  SECTION("nearest: each pixel an f x f block; average pooling undoes it") {
    const auto up = ddpm::io::upsample_nearest(x, 2);
    REQUIRE(up.dimension(2) == 6);
    REQUIRE(up.dimension(3) == 8);
    for (int n = 0; n < 2; ++n)
      for (int y = 0; y < 6; ++y)
        for (int c = 0; c < 8; ++c) CHECK(up(n, 0, y, c) == x(n, 0, y / 2, c / 2));
    const auto same = ddpm::io::upsample_nearest(x, 1);
    for (Eigen::Index i = 0; i < x.size(); ++i) CHECK(same.data()[i] == x.data()[i]);
  }
  SECTION("bilinear reproduces the bilinear function (y + 1)(x + 2), clamped at the borders") {
    for (int f : {1, 2, 3}) {
      const auto up = ddpm::io::upsample_bilinear(x, f);
      REQUIRE(up.dimension(2) == 3 * f);
      REQUIRE(up.dimension(3) == 4 * f);
      auto source = [f](int o, int size) { return std::clamp((o + 0.5) / f - 0.5, 0.0, size - 1.0); };
      for (int n = 0; n < 2; ++n)
        for (int y = 0; y < 3 * f; ++y)
          for (int c = 0; c < 4 * f; ++c) {
            const double want = (n + 1) * (source(y, 3) + 1) * (source(c, 4) + 2);
            CHECK(up(n, 0, y, c) == Approx(want).epsilon(sizeof(S) == 4 ? 1e-6 : 1e-14));
          }
    }
  }
  REQUIRE_THROWS_AS(ddpm::io::upsample_nearest(x, 0), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::io::upsample_bilinear(x, -2), ddpm::invalid_argument);
}

namespace {
// Images [N, 1, 1, 1] holding one value each: points on a line, distances |a - b|.
ddpm::Tensor<double, 4> points(const std::vector<double>& v) {
  ddpm::Tensor<double, 4> t(static_cast<Eigen::Index>(v.size()), 1, 1, 1);
  for (std::size_t i = 0; i < v.size(); ++i) t.data()[i] = v[i];
  return t;
}
}  // namespace

TEST_CASE("split_digits: a deterministic stratified partition", "[digits][eval]") {
  std::vector<int> labels;
  for (int i = 0; i < 1000; ++i) labels.push_back((i * 7) % 10 < 3 ? 0 : (i % 4) + 1);  // unequal classes
  const auto a = examples::split_digits(labels, 0.2, 5);
  const auto b = examples::split_digits(labels, 0.2, 5);
  const auto c = examples::split_digits(labels, 0.2, 6);
  CHECK(a.train == b.train);
  CHECK(a.held_out == b.held_out);
  CHECK(a.held_out != c.held_out);
  std::vector<int> all = a.train;
  all.insert(all.end(), a.held_out.begin(), a.held_out.end());
  std::sort(all.begin(), all.end());
  std::vector<int> expected(1000);
  std::iota(expected.begin(), expected.end(), 0);
  CHECK(all == expected);  // disjoint, covering
  CHECK(std::is_sorted(a.train.begin(), a.train.end()));
  for (int k = 0; k < 5; ++k) {
    const auto count = std::count(labels.begin(), labels.end(), k);
    const auto held = std::count_if(a.held_out.begin(), a.held_out.end(), [&](int i) { return labels[i] == k; });
    CHECK(held == std::llround(0.2 * static_cast<double>(count)));
  }
  CHECK(examples::split_digits(labels, 0.0).held_out.empty());
  CHECK(examples::split_digits(labels, 1.0).train.empty());
  REQUIRE_THROWS_AS(examples::split_digits(labels, 1.5), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(examples::split_digits({0, -1}), ddpm::invalid_argument);
}

TEST_CASE("KnnClassifier, nearest_neighbours and median_pairwise_distance on hand-placed points", "[digits][eval]") {
  // Class 0 around 0, class 1 around 10, one class-1 outlier at 2.
  const auto train = points({0.0, 1.0, 2.0, 9.0, 10.0, 11.0});
  const std::vector<int> labels{0, 0, 1, 1, 1, 1};
  const auto query = points({1.9, 0.4, 8.0, 5.4});
  SECTION("k = 1: the label of the nearest point") {
    examples::KnnClassifier<double> knn(train, labels, 1);
    CHECK(knn.predict(query) == std::vector<int>{1, 0, 1, 1});  // 1.9 -> 2 (the outlier), 0.4 -> 0, 8 -> 9, 5.4 -> 2
  }
  SECTION("k = 3: the majority of the three nearest") {
    examples::KnnClassifier<double> knn(train, labels, 3);
    // 1.9: {2, 1, 0} -> 1, 0, 0 -> class 0;  5.4: {2 (3.4), 9 (3.6), 1 (4.4)} -> 1, 1, 0 -> class 1.
    CHECK(knn.predict(query) == std::vector<int>{0, 0, 1, 1});
    CHECK(knn.accuracy(query, {0, 0, 1, 0}) == 0.75);
    CHECK(examples::fraction_classified_as(knn, query, {1, 1, 1, 1}) == 0.5);
  }
  SECTION("k = 2: a tie in votes goes to the class ranked nearest") {
    examples::KnnClassifier<double> knn(train, labels, 2);
    // 1.4: nearest 1 (0.4, class 0) then 2 (0.6, class 1) -> 0;  1.6: 2 (0.4, class 1) then 1 (0.6) -> 1.
    CHECK(knn.predict(points({1.4, 1.6})) == std::vector<int>{0, 1});
  }
  SECTION("nearest_neighbours: index and distance; ties take the smaller index") {
    const auto nn = examples::nearest_neighbours(points({1.9, 5.5, -3.0, 9.5}), train);
    REQUIRE(nn.size() == 4);
    CHECK(nn[0].index == 2);
    CHECK(nn[0].distance == Approx(0.1));
    CHECK(nn[1].index == 2);  // 5.5 is 3.5 from 2 (index 2) and from 9 (index 3)
    CHECK(nn[1].distance == 3.5);
    CHECK(nn[2].index == 0);
    CHECK(nn[2].distance == 3.0);
    CHECK(nn[3].index == 3);  // 9.5: 0.5 from 9 and from 10
  }
  SECTION("median_pairwise_distance and median") {
    // {0, 1, 3}: pairs 1, 3, 2 -> median 2.  {0, 1, 3, 7}: 1, 3, 7, 2, 6, 4 -> (3 + 4) / 2.
    CHECK(examples::median_pairwise_distance(points({0.0, 1.0, 3.0})) == 2.0);
    CHECK(examples::median_pairwise_distance(points({0.0, 1.0, 3.0, 7.0})) == 3.5);
    CHECK(examples::median({5.0, 1.0, 4.0, 2.0}) == 3.0);
    // Euclidean over all pixels: (0,0,0,0) and (1,1,1,1) as 1 x 2 x 2 images are 2 apart.
    ddpm::Tensor<double, 4> two(2, 1, 2, 2);
    two.setZero();
    for (int i = 4; i < 8; ++i) two.data()[i] = 1.0;
    CHECK(examples::median_pairwise_distance(two) == 2.0);
  }
  SECTION("bad arguments") {
    REQUIRE_THROWS_AS(examples::KnnClassifier<double>(train, labels, 0), ddpm::invalid_argument);
    REQUIRE_THROWS_AS(examples::KnnClassifier<double>(train, labels, 7), ddpm::invalid_argument);
    REQUIRE_THROWS_AS(examples::KnnClassifier<double>(train, {0, 1}, 1), ddpm::invalid_argument);
    REQUIRE_THROWS_AS(examples::KnnClassifier<double>(train, {0, 0, 0, 0, 0, -1}, 1), ddpm::invalid_argument);
    examples::KnnClassifier<double> knn(train, labels, 1);
    REQUIRE_THROWS_AS(knn.predict(ddpm::Tensor<double, 4>(1, 1, 2, 1)), ddpm::invalid_argument);
    REQUIRE_THROWS_AS(knn.accuracy(query, {0}), ddpm::invalid_argument);
    REQUIRE_THROWS_AS(examples::nearest_neighbours(query, points({})), ddpm::invalid_argument);
    REQUIRE_THROWS_AS(examples::median_pairwise_distance(points({1.0})), ddpm::invalid_argument);
    REQUIRE_THROWS_AS(examples::median({}), ddpm::invalid_argument);
    REQUIRE_THROWS_AS(examples::take_images(train, {6}), ddpm::invalid_argument);
    REQUIRE_THROWS_AS(examples::take_labels(labels, {-1}), ddpm::invalid_argument);
  }
}

TEST_CASE("sklearn's digits file, when installed: 1797 rows, its class counts, 1-NN held-out accuracy",
          "[io][digits]") {
  const std::string path = real_digits_path();
  if (path.empty()) {
    WARN(
        "sklearn's digits.csv.gz is not on this machine (install python3-sklearn or run scripts/get-digits.sh); "
        "skipping the test on the real file");
    return;
  }
  const auto d = ddpm::io::load_digits<float>(path);
  REQUIRE(d.size() == 1797);
  // Per-class counts as `zcat digits.csv.gz | awk -F, '{c[$65]++} END {for (k in c) print k, c[k]}'` gives them.
  const std::vector<int> counts{178, 182, 177, 183, 181, 182, 181, 179, 174, 180};
  std::vector<int> got(10);
  for (int l : d.labels) ++got[static_cast<std::size_t>(l)];
  CHECK(got == counts);
  CHECK(std::accumulate(got.begin(), got.end(), 0) == 1797);
  // The first image is a 0 whose first row is 0 0 5 13 9 1 0 0 (sklearn's load_digits().images[0]).
  CHECK(d.labels[0] == 0);
  const int row0[8] = {0, 0, 5, 13, 9, 1, 0, 0};
  for (int c = 0; c < 8; ++c) CHECK(d.images(0, 0, 0, c) == static_cast<float>(row0[c] / 8.0 - 1.0));
  // Nearest-neighbour classification of these digits is published at about 98% held-out accuracy.
  const auto split = examples::split_digits(d.labels, 0.2, 0);
  const auto train = examples::take_images(d.images, split.train);
  const auto held = examples::take_images(d.images, split.held_out);
  examples::KnnClassifier<float> knn(train, examples::take_labels(d.labels, split.train), 1);
  CHECK(knn.accuracy(held, examples::take_labels(d.labels, split.held_out)) >= 0.95);
}
