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

// Where parallel_for's blocks run: "openmp-shared" (the team of an OpenMP runtime the process had
// already loaded, e.g. PyTorch's, so the two never compete for cores) or "own" (this library's pool;
// also forced by LOCALMAMBA_THREAD_POOL=own). The same blocks either way.
const char* thread_pool_kind();

}  // namespace localmamba
