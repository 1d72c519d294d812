// Wall-clock helpers and the one table the benchmark prints.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace bench {

inline double now_seconds() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

inline double median(std::vector<double> values) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

inline double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  return values[std::min(values.size() - 1, static_cast<std::size_t>(p * values.size()))];
}

// One row: what was measured, vramguard's figure, the baseline's, the ratio and the target.
struct Row {
  std::string measurement;
  std::string ours;
  std::string baseline;
  std::string ratio;
  std::string target;
  bool met;
};

inline std::vector<Row>& rows() {
  static std::vector<Row> all;
  return all;
}

inline std::string fmt(const char* format, double value) {
  char text[64];
  std::snprintf(text, sizeof text, format, value);
  return text;
}

inline void print_table(const char* title) {
  std::printf(
      "\n### %s\n\n| measurement | vramguard | baseline | ratio | target | met "
      "|\n|---|---|---|---|---|---|\n",
      title);
  for (const auto& r : rows()) {
    std::printf("| %s | %s | %s | %s | %s | %s |\n", r.measurement.c_str(), r.ours.c_str(),
                r.baseline.c_str(), r.ratio.c_str(), r.target.c_str(), r.met ? "yes" : "**no**");
  }
}

}  // namespace bench
