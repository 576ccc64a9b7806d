// A small persistent thread pool. We avoid OpenMP so the extension never fights the
// framework's own OpenMP runtime over threads in the same process.
#pragma once

#include <cstdint>
#include <functional>

namespace localmamba {

// Number of worker threads used by the CPU kernels (including the caller).
// Default: LOCALMAMBA_NUM_THREADS if set, else std::thread::hardware_concurrency().
int get_num_threads();
void set_num_threads(int num_threads);

// Calls fn(begin, end) over disjoint ranges covering [0, n). Work is split into
// contiguous blocks of at least `grain` items; the split depends only on n, grain and the
// thread count, and kernels must write disjoint outputs per item so results never depend
// on the thread count. Exceptions thrown by fn are rethrown in the caller.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace localmamba
