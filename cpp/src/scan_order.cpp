#include "localmamba/scan_order.h"

#include <algorithm>
#include <stdexcept>
#include <utility>

namespace localmamba {

// The scan-order families (SPEC 1.1). Adding one is one entry here, mirrored by one entry in
// SCAN_FAMILIES in python/localmamba/ops/directions.py (tests check the two tables agree).
const std::vector<ScanFamily>& scan_families() {
  using Visit = ScanFamily::Visit;
  static const std::vector<ScanFamily> families = {
      {"h",  // row-major
       [](int64_t rows, int64_t cols, int64_t, Visit visit, void* context) {
         for (int64_t i = 0; i < rows; ++i)
           for (int64_t j = 0; j < cols; ++j) visit(context, i, j);
       }},
      {"v",  // column-major
       [](int64_t rows, int64_t cols, int64_t, Visit visit, void* context) {
         for (int64_t j = 0; j < cols; ++j)
           for (int64_t i = 0; i < rows; ++i) visit(context, i, j);
       }},
      {"w{K}",  // K x K windows row-major, tokens row-major inside a window
       [](int64_t rows, int64_t cols, int64_t k, Visit visit, void* context) {
         for (int64_t gi = 0; gi < rows / k; ++gi)
           for (int64_t gj = 0; gj < cols / k; ++gj)
             for (int64_t a = 0; a < k; ++a)
               for (int64_t b = 0; b < k; ++b) visit(context, gi * k + a, gj * k + b);
       }},
      {"w{K}_col",  // windows and the tokens inside a window both column-major
       [](int64_t rows, int64_t cols, int64_t k, Visit visit, void* context) {
         for (int64_t gj = 0; gj < cols / k; ++gj)
           for (int64_t gi = 0; gi < rows / k; ++gi)
             for (int64_t b = 0; b < k; ++b)
               for (int64_t a = 0; a < k; ++a) visit(context, gi * k + a, gj * k + b);
       }},
  };
  return families;
}

namespace {

const std::string kWindowPlaceholder = "{K}";
const std::string kFlipSuffix = "_flip";

// The pattern's text before and after "{K}" (all of it before, for a family without a window).
std::pair<std::string, std::string> split_pattern(const ScanFamily& family) {
  const std::string pattern = family.pattern;
  const size_t at = pattern.find(kWindowPlaceholder);
  if (at == std::string::npos) return {pattern, ""};
  return {pattern.substr(0, at), pattern.substr(at + kWindowPlaceholder.size())};
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// "expected 'h', 'v', 'wK' or 'wK_col' (K a positive integer), optionally followed by '_flip'"
std::string accepted_forms() {
  const auto& families = scan_families();
  std::string forms;
  for (size_t f = 0; f < families.size(); ++f) {
    auto [prefix, suffix] = split_pattern(families[f]);
    const std::string form = families[f].has_window() ? prefix + "K" + suffix : prefix;
    forms += (f == 0 ? "" : f + 1 == families.size() ? " or " : ", ") + ("'" + form + "'");
  }
  return "expected " + forms + " (K a positive integer), optionally followed by '" + kFlipSuffix + "'";
}

// The window size spelled by `digits` (1 to 9 decimal digits), or -1 when it is not one.
int64_t parse_window(const std::string& digits) {
  const bool all_digits = !digits.empty() && digits.size() <= 9 &&
                          std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
  return all_digits ? std::stoll(digits) : -1;
}

void check_grid(int64_t height, int64_t width) {
  if (height < 1 || width < 1) {
    throw std::invalid_argument("grid size must be positive, got H=" + std::to_string(height) +
                                ", W=" + std::to_string(width));
  }
}

int64_t round_up(int64_t value, int64_t multiple) { return (value + multiple - 1) / multiple * multiple; }

// Throws before anything is allocated when the padded grid exceeds kMaxScanLength tokens. Each
// padded side is checked on its own first, so the product below cannot overflow.
void check_padded_grid(const ScanDirection& direction, int64_t height, int64_t width, int64_t padded_height,
                       int64_t padded_width) {
  const bool too_long = padded_height > kMaxScanLength || padded_width > kMaxScanLength ||
                        padded_height * padded_width > kMaxScanLength;
  if (!too_long) return;
  std::string implied = padded_height > kMaxScanLength || padded_width > kMaxScanLength
                            ? "more than " + std::to_string(kMaxScanLength)
                            : std::to_string(padded_height * padded_width);
  std::string message = "scan direction '" + direction.name() + "' on an H=" + std::to_string(height) +
                        " x W=" + std::to_string(width) + " grid implies a sequence of " + implied +
                        " tokens; the limit is " + std::to_string(kMaxScanLength) + " tokens per sequence";
  if (direction.scan_family().has_window()) {
    message += " (the grid is padded to multiples of the window, and a window larger than the grid pads it to "
               "one K x K window, so K may be at most " + std::to_string(kMaxScanWindow) + ")";
  }
  throw std::invalid_argument(message);
}

// The window K the grid is padded to multiples of: the direction's own for a windowed family, else 1.
int64_t padding_multiple(const ScanDirection& direction) {
  if (!direction.scan_family().has_window()) return 1;
  if (direction.window < 1) {
    throw std::invalid_argument("scan direction window size must be >= 1, got " + std::to_string(direction.window));
  }
  return direction.window;
}

}  // namespace

bool ScanFamily::has_window() const { return std::string(pattern).find(kWindowPlaceholder) != std::string::npos; }

const ScanFamily& ScanDirection::scan_family() const {
  const auto& families = scan_families();
  if (family < 0 || static_cast<size_t>(family) >= families.size()) {
    throw std::invalid_argument("scan direction family index must be in [0, " + std::to_string(families.size()) +
                                "), got " + std::to_string(family));
  }
  return families[static_cast<size_t>(family)];
}

std::string ScanDirection::name() const {
  auto [prefix, suffix] = split_pattern(scan_family());
  const std::string base = scan_family().has_window() ? prefix + std::to_string(window) + suffix : prefix;
  return flip ? base + kFlipSuffix : base;
}

ScanDirection parse_direction(const std::string& name) {
  ScanDirection direction;
  std::string base = name;
  if (base.size() > kFlipSuffix.size() && ends_with(base, kFlipSuffix)) {
    direction.flip = true;
    base.resize(base.size() - kFlipSuffix.size());
  }
  const auto& families = scan_families();
  for (size_t f = 0; f < families.size(); ++f) {
    auto [prefix, suffix] = split_pattern(families[f]);
    direction.family = static_cast<int>(f);
    if (!families[f].has_window()) {
      if (base == prefix) return direction;
      continue;
    }
    if (base.size() <= prefix.size() + suffix.size() || base.compare(0, prefix.size(), prefix) != 0 ||
        !ends_with(base, suffix)) {
      continue;
    }
    const std::string digits = base.substr(prefix.size(), base.size() - prefix.size() - suffix.size());
    direction.window = parse_window(digits);
    if (direction.window == 0) {
      throw std::invalid_argument("direction '" + name + "': window size must be >= 1, got " + digits);
    }
    if (direction.window > 0) return direction;
  }
  throw std::invalid_argument("unknown scan direction '" + name + "': " + accepted_forms());
}

int64_t scan_length(const ScanDirection& direction, int64_t height, int64_t width) {
  check_grid(height, width);
  // A window above the limit is rejected before rounding up, which could overflow.
  const int64_t window = std::min(padding_multiple(direction), kMaxScanLength + 1);
  const int64_t padded_height = round_up(std::min(height, kMaxScanLength + 1), window);
  const int64_t padded_width = round_up(std::min(width, kMaxScanLength + 1), window);
  check_padded_grid(direction, height, width, padded_height, padded_width);
  return padded_height * padded_width;
}

std::vector<int64_t> scan_order(const ScanDirection& direction, int64_t height, int64_t width) {
  const int64_t length = scan_length(direction, height, width);  // checks the grid and the limit first
  const int64_t k = padding_multiple(direction);
  struct Collector {
    std::vector<int64_t> order;
    int64_t height, width;
  } collector{{}, height, width};
  collector.order.reserve(static_cast<size_t>(length));
  direction.scan_family().visit_padded_grid(
      round_up(height, k), round_up(width, k), k,
      [](void* context, int64_t i, int64_t j) {
        auto& c = *static_cast<Collector*>(context);
        c.order.push_back(i < c.height && j < c.width ? i * c.width + j : -1);
      },
      &collector);
  if (static_cast<int64_t>(collector.order.size()) != length) {
    throw std::logic_error("scan family '" + std::string(direction.scan_family().pattern) + "' visited " +
                           std::to_string(collector.order.size()) + " positions of a " + std::to_string(length) +
                           "-position padded grid; a family must visit each position once");
  }
  if (direction.flip) std::reverse(collector.order.begin(), collector.order.end());
  return std::move(collector.order);
}

ScanIndexMaps build_scan_index_maps(const std::vector<ScanDirection>& directions, int64_t height,
                                    int64_t width) {
  check_grid(height, width);
  if (directions.empty()) throw std::invalid_argument("directions must not be empty");
  ScanIndexMaps maps;
  maps.num_directions = static_cast<int64_t>(directions.size());
  for (const auto& direction : directions) {
    maps.max_length = std::max(maps.max_length, scan_length(direction, height, width));
  }
  maps.num_tokens = height * width;  // <= max_length, so within the limit checked above
  maps.forward.assign(static_cast<size_t>(maps.num_directions * maps.max_length), -1);
  maps.inverse.assign(static_cast<size_t>(maps.num_directions * maps.num_tokens), -1);
  for (int64_t k = 0; k < maps.num_directions; ++k) {
    const std::vector<int64_t> order = scan_order(directions[static_cast<size_t>(k)], height, width);
    for (int64_t t = 0; t < static_cast<int64_t>(order.size()); ++t) {
      const int64_t p = order[static_cast<size_t>(t)];
      maps.forward[static_cast<size_t>(k * maps.max_length + t)] = p;
      if (p >= 0) maps.inverse[static_cast<size_t>(k * maps.num_tokens + p)] = t;
    }
  }
  return maps;
}

}  // namespace localmamba
