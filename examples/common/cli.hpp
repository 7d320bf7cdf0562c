// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// A tiny command-line parser for the example programs, and the main() wrapper that turns any error into a
// message and exit status 1.
//
//   examples::CommandLine cli("forward_process", "Noises a picture ...");
//   cli.option("out", "PATH", "where to write the strip", "forward_process.png");
//   cli.option("seed", "N", "noise seed", "0");
//   cli.positional("image", "a PNG to noise (default: a built-in picture)");
//   if (!cli.parse(argc, argv)) return 0;               // --help was printed
//   const std::string out = cli.get("out");
//   const auto seed = cli.get_integer("seed", 0, UINT64_MAX) ...
//
// Accepted forms: `--name VALUE`, `--name=VALUE`, `--flag`, positional arguments in order, `--` to end the
// options. Unknown options, missing values and malformed numbers throw examples::UsageError.

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace examples {

/// A mistake on the command line; main_guard prints it with a pointer to --help.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class CommandLine {
 public:
  CommandLine(std::string program, std::string summary) : program_(std::move(program)), summary_(std::move(summary)) {}

  /// An option `--name VALUE` with a default value (shown in --help).
  void option(const std::string& name, const std::string& value_name, const std::string& help,
              const std::string& default_value) {
    options_[name] = Option{value_name, help, default_value, false, false, default_value};
    order_.push_back(name);
  }

  /// A switch `--name` without a value; has(name) tells whether it was given.
  void flag(const std::string& name, const std::string& help) {
    options_[name] = Option{"", help, "", true, false, ""};
    order_.push_back(name);
  }

  /// The next positional argument; optional ones may be left out (get returns "").
  void positional(const std::string& name, const std::string& help, bool required = false) {
    positionals_.push_back(Positional{name, help, required, ""});
  }

  /// Parses argv. Returns false after printing the usage if --help (or -h) was given.
  /// Throws UsageError for an unknown option, a missing value, too many or too few positional arguments.
  bool parse(int argc, char** argv) {
    std::size_t next_positional = 0;
    bool options_done = false;
    for (int i = 1; i < argc; ++i) {
      std::string arg = argv[i];
      if (!options_done && (arg == "--help" || arg == "-h")) {
        std::cout << usage();
        return false;
      }
      if (!options_done && arg == "--") {
        options_done = true;
        continue;
      }
      if (!options_done && arg.size() > 2 && arg.rfind("--", 0) == 0) {
        std::string name = arg.substr(2), value;
        const std::size_t eq = name.find('=');
        const bool inline_value = eq != std::string::npos;
        if (inline_value) {
          value = name.substr(eq + 1);
          name = name.substr(0, eq);
        }
        auto it = options_.find(name);
        if (it == options_.end()) throw UsageError("unknown option --" + name);
        Option& opt = it->second;
        if (opt.is_flag) {
          if (inline_value) throw UsageError("option --" + name + " takes no value");
        } else if (!inline_value) {
          if (i + 1 >= argc || std::string(argv[i + 1]).rfind("--", 0) == 0) {
            throw UsageError("option --" + name + " needs a value (" + opt.value_name + ")");
          }
          value = argv[++i];
        }
        opt.value = value;
        opt.given = true;
        continue;
      }
      if (!options_done && arg.size() > 1 && arg[0] == '-' && !is_number(arg)) {
        throw UsageError("unknown option " + arg);
      }
      if (next_positional >= positionals_.size()) throw UsageError("unexpected argument \"" + arg + "\"");
      positionals_[next_positional++].value = arg;
    }
    for (std::size_t k = next_positional; k < positionals_.size(); ++k) {
      if (positionals_[k].required) throw UsageError("missing argument " + positionals_[k].name);
    }
    positional_count_ = next_positional;
    return true;
  }

  /// The value of an option (its default unless given) or of a positional argument ("" if left out).
  std::string get(const std::string& name) const {
    if (auto it = options_.find(name); it != options_.end()) return it->second.value;
    for (const Positional& p : positionals_) {
      if (p.name == name) return p.value;
    }
    throw std::logic_error("examples::CommandLine: no argument named " + name);
  }

  /// Whether an option or flag was given on the command line, or a positional argument was.
  bool has(const std::string& name) const {
    if (auto it = options_.find(name); it != options_.end()) return it->second.given;
    for (std::size_t k = 0; k < positionals_.size(); ++k) {
      if (positionals_[k].name == name) return k < positional_count_;
    }
    throw std::logic_error("examples::CommandLine: no argument named " + name);
  }

  /// The value as an integer in [lo, hi]. Throws UsageError if it is not one.
  long long get_integer(const std::string& name, long long lo, long long hi) const {
    const std::string text = get(name);
    errno = 0;
    char* end = nullptr;
    const long long v = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno == ERANGE || v < lo || v > hi) {
      throw UsageError("--" + name + " is \"" + text + "\", but must be an integer in [" + std::to_string(lo) + ", " +
                       std::to_string(hi) + "]");
    }
    return v;
  }

  /// The value as an unsigned 64-bit integer (e.g. a seed). Throws UsageError if it is not one.
  std::uint64_t get_u64(const std::string& name) const {
    const std::string text = get(name);
    errno = 0;
    char* end = nullptr;
    const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
    if (text.empty() || text[0] == '-' || *end != '\0' || errno == ERANGE) {
      throw UsageError("--" + name + " is \"" + text + "\", but must be an integer in [0, 2^64)");
    }
    return v;
  }

  /// The value as a floating-point number in [lo, hi]. Throws UsageError if it is not one.
  double get_double(const std::string& name, double lo, double hi) const {
    const std::string text = get(name);
    errno = 0;
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || errno == ERANGE || !(v >= lo && v <= hi)) {
      throw UsageError("--" + name + " is \"" + text + "\", but must be a number in [" + std::to_string(lo) + ", " +
                       std::to_string(hi) + "]");
    }
    return v;
  }

  /// The --help text.
  std::string usage() const {
    std::string s = "usage: " + program_ + " [options]";
    for (const Positional& p : positionals_) s += p.required ? " " + p.name : " [" + p.name + "]";
    s += "\n\n" + summary_ + "\n";
    if (!positionals_.empty()) {
      s += "\narguments:\n";
      for (const Positional& p : positionals_) s += pad("  " + p.name) + p.help + "\n";
    }
    s += "\noptions:\n";
    for (const std::string& name : order_) {
      const Option& o = options_.at(name);
      std::string left = "  --" + name + (o.is_flag ? "" : " " + o.value_name);
      s += pad(left) + o.help;
      if (!o.is_flag && !o.default_value.empty()) s += " (default: " + o.default_value + ")";
      s += "\n";
    }
    s += pad("  -h, --help") + "print this help and exit\n";
    return s;
  }

 private:
  struct Option {
    std::string value_name, help, default_value;
    bool is_flag, given;
    std::string value;
  };
  struct Positional {
    std::string name, help;
    bool required;
    std::string value;
  };

  static std::string pad(std::string s) {
    constexpr std::size_t width = 22;
    if (s.size() + 2 > width) return s + "\n" + std::string(width, ' ');
    return s + std::string(width - s.size(), ' ');
  }
  static bool is_number(const std::string& s) {
    char* end = nullptr;
    std::strtod(s.c_str(), &end);
    return *end == '\0';
  }

  std::string program_, summary_;
  std::map<std::string, Option> options_;
  std::vector<std::string> order_;
  std::vector<Positional> positionals_;
  std::size_t positional_count_ = 0;
};

/// Runs body() and returns its exit status; a UsageError prints "PROGRAM: error: ..." and a pointer to
/// --help, any other exception prints "PROGRAM: error: ..."; both return 1.
template <class Body>
int main_guard(const char* program, Body&& body) {
  try {
    return body();
  } catch (const UsageError& e) {
    std::cerr << program << ": error: " << e.what() << "\n(try " << program << " --help)\n";
  } catch (const std::exception& e) {
    std::cerr << program << ": error: " << e.what() << "\n";
  }
  return 1;
}

}  // namespace examples
