#include "localmamba/scan_order.h"

#include <algorithm>
#include <stdexcept>

namespace localmamba {
namespace {

const char* kAcceptedForms =
    "expected 'h', 'v', 'wK' or 'wK_col' (K a positive integer), optionally followed by '_flip'";

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
  if (direction.kind == ScanKind::kWindow || direction.kind == ScanKind::kWindowColumnFirst) {
    message += " (the grid is padded to multiples of the window, and a window larger than the grid pads it to "
               "one K x K window, so K may be at most " + std::to_string(kMaxScanWindow) + ")";
  }
  throw std::invalid_argument(message);
}

}  // namespace

std::string ScanDirection::name() const {
  std::string base;
  switch (kind) {
    case ScanKind::kRowMajor: base = "h"; break;
    case ScanKind::kColumnMajor: base = "v"; break;
    case ScanKind::kWindow: base = "w" + std::to_string(window); break;
    case ScanKind::kWindowColumnFirst: base = "w" + std::to_string(window) + "_col"; break;
  }
  return flip ? base + "_flip" : base;
}

ScanDirection parse_direction(const std::string& name) {
  ScanDirection direction;
  std::string base = name;
  const std::string flip_suffix = "_flip";
  if (base.size() > flip_suffix.size() &&
      base.compare(base.size() - flip_suffix.size(), flip_suffix.size(), flip_suffix) == 0) {
    direction.flip = true;
    base.resize(base.size() - flip_suffix.size());
  }
  if (base == "h") {
    direction.kind = ScanKind::kRowMajor;
    return direction;
  }
  if (base == "v") {
    direction.kind = ScanKind::kColumnMajor;
    return direction;
  }
  if (base.size() >= 2 && base[0] == 'w') {
    std::string digits = base.substr(1);
    direction.kind = ScanKind::kWindow;
    const std::string col_suffix = "_col";
    if (digits.size() > col_suffix.size() &&
        digits.compare(digits.size() - col_suffix.size(), col_suffix.size(), col_suffix) == 0) {
      direction.kind = ScanKind::kWindowColumnFirst;
      digits.resize(digits.size() - col_suffix.size());
    }
    const bool all_digits = !digits.empty() && digits.size() <= 9 &&
                            std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (all_digits) {
      direction.window = std::stoll(digits);
      if (direction.window < 1) {
        throw std::invalid_argument("direction '" + name + "': window size must be >= 1, got " + digits);
      }
      return direction;
    }
  }
  throw std::invalid_argument("unknown scan direction '" + name + "': " + kAcceptedForms);
}

int64_t scan_length(const ScanDirection& direction, int64_t height, int64_t width) {
  check_grid(height, width);
  const bool windowed = direction.kind == ScanKind::kWindow || direction.kind == ScanKind::kWindowColumnFirst;
  if (windowed && direction.window < 1) {
    throw std::invalid_argument("scan direction window size must be >= 1, got " + std::to_string(direction.window));
  }
  // A window above the limit is rejected before rounding up, which could overflow.
  const int64_t window = windowed ? std::min(direction.window, kMaxScanLength + 1) : 1;
  const int64_t padded_height = windowed ? round_up(std::min(height, kMaxScanLength + 1), window) : height;
  const int64_t padded_width = windowed ? round_up(std::min(width, kMaxScanLength + 1), window) : width;
  check_padded_grid(direction, height, width, padded_height, padded_width);
  return padded_height * padded_width;
}

std::vector<int64_t> scan_order(const ScanDirection& direction, int64_t height, int64_t width) {
  check_grid(height, width);
  std::vector<int64_t> order;
  order.reserve(static_cast<size_t>(scan_length(direction, height, width)));
  const int64_t k = direction.window;
  auto visit = [&](int64_t i, int64_t j) {
    order.push_back(i < height && j < width ? i * width + j : -1);
  };
  switch (direction.kind) {
    case ScanKind::kRowMajor:
      for (int64_t i = 0; i < height; ++i)
        for (int64_t j = 0; j < width; ++j) visit(i, j);
      break;
    case ScanKind::kColumnMajor:
      for (int64_t j = 0; j < width; ++j)
        for (int64_t i = 0; i < height; ++i) visit(i, j);
      break;
    case ScanKind::kWindow: {
      const int64_t rows = round_up(height, k) / k, cols = round_up(width, k) / k;
      for (int64_t gi = 0; gi < rows; ++gi)
        for (int64_t gj = 0; gj < cols; ++gj)
          for (int64_t a = 0; a < k; ++a)
            for (int64_t b = 0; b < k; ++b) visit(gi * k + a, gj * k + b);
      break;
    }
    case ScanKind::kWindowColumnFirst: {
      const int64_t rows = round_up(height, k) / k, cols = round_up(width, k) / k;
      for (int64_t gj = 0; gj < cols; ++gj)
        for (int64_t gi = 0; gi < rows; ++gi)
          for (int64_t b = 0; b < k; ++b)
            for (int64_t a = 0; a < k; ++a) visit(gi * k + a, gj * k + b);
      break;
    }
  }
  if (direction.flip) std::reverse(order.begin(), order.end());
  return order;
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
