#pragma once

#include <string>

namespace localmamba {

struct BuildInfo {
  std::string version;
  std::string compiler;
  std::string simd_compiled;  // vector extensions enabled at compile time for the baseline build
  std::string simd_runtime;   // widest extension this CPU supports (for runtime dispatch)
};

BuildInfo get_build_info();

}  // namespace localmamba
