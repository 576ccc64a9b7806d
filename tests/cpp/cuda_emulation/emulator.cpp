// The emulated CUDA runtime behind include/cuda_runtime.h: launch-limit checks, a pool of
// persistent worker threads that run one block at a time, and checked barriers for
// __syncthreads and warp shuffles (divergence and deadlock abort with a message).
#include <cuda_runtime.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace localmamba {
namespace cuda_emulation {
namespace {

constexpr unsigned kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "CUDA emulation: %s\n", message.c_str());
  std::fflush(stderr);
  std::abort();
}

std::string site(const char* file, int line) {
  const char* slash = std::strrchr(file, '/');
  return std::string(slash ? slash + 1 : file) + ":" + std::to_string(line);
}

std::string coords_text(const uint3& v) {
  return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")";
}

// A barrier for a fixed number of threads that knows where it is called from: all threads of one
// phase must arrive at the same call site, no thread may have returned from the kernel meanwhile,
// and the phase must complete within the watchdog time -- otherwise the process aborts with a message.
class CheckedBarrier {
 public:
  void reset(unsigned expected, std::string name) {
    expected_ = expected;
    arrived_ = exited_ = 0;
    name_ = std::move(name);
  }

  void arrive_and_wait(unsigned thread, const char* file, int line, const std::string& context) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (exited_ > 0) {
      fail(context + ": thread " + std::to_string(thread) + " reached " + name_ + " at " + site(file, line) + " but " +
           std::to_string(exited_) + " thread(s) had already returned from the kernel (divergent barrier)");
    }
    if (arrived_ == 0) {
      file_ = file;
      line_ = line;
      first_ = thread;
    } else if (line != line_ || std::strcmp(file, file_) != 0) {
      fail(context + ": divergent " + name_ + ": thread " + std::to_string(thread) + " at " + site(file, line) +
           ", thread " + std::to_string(first_) + " at " + site(file_, line_));
    }
    if (++arrived_ == expected_) {
      arrived_ = 0;
      generation_.fetch_add(1, std::memory_order_release);
      return;
    }
    const uint64_t generation = generation_.load(std::memory_order_relaxed);
    lock.unlock();
    wait_for_next_generation(generation, context);
  }

  void thread_exited(unsigned thread, const std::string& context) {
    std::lock_guard<std::mutex> lock(mutex_);
    ++exited_;
    if (arrived_ > 0) {
      fail(context + ": thread " + std::to_string(thread) + " returned from the kernel while " +
           std::to_string(arrived_) + " thread(s) wait at " + name_ + " at " + site(file_, line_) +
           " (divergent barrier)");
    }
  }

 private:
  // Yielding spin: with many more emulated threads than cores, a sleeping wait (futex) per thread
  // and phase costs several times more than letting the scheduler run the threads still working.
  void wait_for_next_generation(uint64_t generation, const std::string& context) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(watchdog_seconds());
    for (unsigned spins = 1; generation_.load(std::memory_order_acquire) == generation; ++spins) {
      std::this_thread::yield();
      if (spins % 1024 == 0 && std::chrono::steady_clock::now() > deadline) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (generation_.load(std::memory_order_acquire) != generation) return;
        fail(context + ": deadlock: only " + std::to_string(arrived_) + " of " + std::to_string(expected_) +
             " threads reached " + name_ + " at " + site(file_, line_) + " within " +
             std::to_string(watchdog_seconds()) + " s (the others wait elsewhere or never arrive)");
      }
    }
  }

  std::mutex mutex_;
  unsigned expected_ = 0, arrived_ = 0, exited_ = 0, first_ = 0;
  std::atomic<uint64_t> generation_{0};
  const char* file_ = "";
  int line_ = 0;
  std::string name_;
};

// Everything the threads of the running block share.
struct Block {
  const char* kernel = "";
  dim3 grid, block;
  uint3 index{0, 0, 0};
  unsigned num_threads = 0;
  CheckedBarrier barrier;
  std::vector<std::unique_ptr<CheckedBarrier>> warp_barriers;
  std::vector<unsigned> live_lanes;  // per warp: 32, fewer in a partial last warp
  std::vector<uint64_t> slots;       // per warp: 2 (alternating) x 32 shuffle values

  std::string context(unsigned thread) const {
    return std::string("kernel ") + kernel + " block " + coords_text(index) + " thread " + std::to_string(thread);
  }
};

thread_local Block* running_block = nullptr;
thread_local unsigned running_thread = 0;
thread_local unsigned shuffle_parity = 0;
thread_local cudaError_t last_error = cudaSuccess;

// Persistent worker threads: worker i runs thread i of every block, so a launch costs a wake-up
// per thread instead of a thread creation.
class WorkerPool {
 public:
  static WorkerPool& instance() {
    static WorkerPool pool;
    return pool;
  }

  ~WorkerPool() {
    for (auto& worker : workers_) {
      std::lock_guard<std::mutex> lock(worker->mutex);
      worker->stop = true;
      worker->cv.notify_one();
    }
    for (auto& worker : workers_) worker->thread.join();
  }

  // Runs work(i) for i in [0, num_threads) on the workers and waits for all of them.
  void run(unsigned num_threads, const std::function<void(unsigned)>& work) {
    while (workers_.size() < num_threads) {
      workers_.push_back(std::make_unique<Worker>());
      Worker* w = workers_.back().get();
      w->thread = std::thread([this, w] { loop(*w); });
    }
    {
      std::lock_guard<std::mutex> lock(done_mutex_);
      remaining_ = num_threads;
    }
    for (unsigned i = 0; i < num_threads; ++i) {
      Worker& w = *workers_[i];
      std::lock_guard<std::mutex> lock(w.mutex);
      w.work = &work;
      w.index = i;
      ++w.epoch;
      w.cv.notify_one();
    }
    std::unique_lock<std::mutex> lock(done_mutex_);
    done_cv_.wait(lock, [&] { return remaining_ == 0; });
  }

 private:
  struct Worker {
    std::thread thread;
    std::mutex mutex;
    std::condition_variable cv;
    uint64_t epoch = 0;
    bool stop = false;
    unsigned index = 0;
    const std::function<void(unsigned)>* work = nullptr;
  };

  void loop(Worker& w) {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(unsigned)>* work;
      unsigned index;
      {
        std::unique_lock<std::mutex> lock(w.mutex);
        w.cv.wait(lock, [&] { return w.stop || w.epoch != seen; });
        if (w.stop) return;
        seen = w.epoch;
        work = w.work;
        index = w.index;
      }
      (*work)(index);
      std::lock_guard<std::mutex> lock(done_mutex_);
      if (--remaining_ == 0) done_cv_.notify_one();
    }
  }

  std::vector<std::unique_ptr<Worker>> workers_;
  std::mutex done_mutex_;
  std::condition_variable done_cv_;
  unsigned remaining_ = 0;
};

std::mutex counts_mutex;
std::map<std::string, long long>& counts() {
  static std::map<std::string, long long> by_kernel;
  return by_kernel;
}

bool launch_fits(dim3 grid, dim3 block, size_t shared_bytes) {
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  return threads >= 1 && threads <= 1024 && block.x <= 1024 && block.y <= 1024 && block.z <= 64 && grid.x >= 1 &&
         grid.y >= 1 && grid.z >= 1 && grid.x <= 2147483647u && grid.y <= 65535 && grid.z <= 65535 &&
         shared_bytes <= 48 * 1024;
}

}  // namespace

double watchdog_seconds() {
  static const double seconds = [] {
    const char* text = std::getenv("LOCALMAMBA_EMULATION_WATCHDOG_S");
    const double value = text ? std::atof(text) : 0.0;
    return value > 0 ? value : 10.0;
  }();
  return seconds;
}

void record_error(cudaError_t error) {
  if (last_error == cudaSuccess) last_error = error;
}

cudaError_t take_error() {
  const cudaError_t error = last_error;
  last_error = cudaSuccess;
  return error;
}

long long launch_count(const char* kernel_name) {
  std::lock_guard<std::mutex> lock(counts_mutex);
  const auto it = counts().find(kernel_name);
  return it == counts().end() ? 0 : it->second;
}

void run_grid(const char* kernel_name, dim3 grid, dim3 block_dim, size_t dynamic_shared_bytes,
              const std::function<void()>& body) {
  if (!launch_fits(grid, block_dim, dynamic_shared_bytes)) {
    record_error(cudaErrorInvalidConfiguration);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(counts_mutex);
    ++counts()[kernel_name];
  }
  Block block;
  block.kernel = kernel_name;
  block.grid = grid;
  block.block = block_dim;
  block.num_threads = block_dim.x * block_dim.y * block_dim.z;
  const unsigned warps = (block.num_threads + kWarpSize - 1) / kWarpSize;
  for (unsigned w = 0; w < warps; ++w) {
    block.warp_barriers.push_back(std::make_unique<CheckedBarrier>());
    block.live_lanes.push_back(std::min(kWarpSize, block.num_threads - w * kWarpSize));
  }
  block.slots.assign(size_t(warps) * 2 * kWarpSize, 0);
  const std::function<void(unsigned)> thread_body = [&](unsigned t) {
    running_block = &block;
    running_thread = t;
    shuffle_parity = 0;
    current.thread = uint3{t % block_dim.x, (t / block_dim.x) % block_dim.y, t / (block_dim.x * block_dim.y)};
    current.block = block.index;
    current.block_dim = block_dim;
    current.grid_dim = grid;
    body();
    block.barrier.thread_exited(t, block.context(t));
    block.warp_barriers[t / kWarpSize]->thread_exited(t, block.context(t));
    running_block = nullptr;
  };
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        block.index = uint3{x, y, z};
        block.barrier.reset(block.num_threads, "__syncthreads");
        for (unsigned w = 0; w < warps; ++w) block.warp_barriers[w]->reset(block.live_lanes[w], "a warp shuffle");
        WorkerPool::instance().run(block.num_threads, thread_body);
      }
    }
  }
}

void sync_threads(const char* file, int line) {
  Block& block = *running_block;
  block.barrier.arrive_and_wait(running_thread, file, line, block.context(running_thread));
}

uint64_t warp_exchange(unsigned mask, uint64_t bits, int source_offset, const char* what, const char* file,
                       int line) {
  Block& block = *running_block;
  const unsigned t = running_thread, lane = t % kWarpSize, warp = t / kWarpSize;
  if (mask != kFullMask) {
    char text[16];
    std::snprintf(text, sizeof text, "0x%08x", mask);
    fail(block.context(t) + ": " + what + " at " + site(file, line) + " with the partial mask " + text +
         " (these kernels only shuffle whole warps)");
  }
  if (block.live_lanes[warp] != kWarpSize) {
    fail(block.context(t) + ": " + what + " at " + site(file, line) + " names all 32 lanes, but warp " +
         std::to_string(warp) + " has only " + std::to_string(block.live_lanes[warp]) + " (a block of " +
         std::to_string(block.num_threads) + " threads): inactive lanes");
  }
  uint64_t* slots = &block.slots[(size_t(warp) * 2 + shuffle_parity) * kWarpSize];
  shuffle_parity ^= 1;  // the next exchange writes the other half, so slow readers of this one are safe
  slots[lane] = bits;
  block.warp_barriers[warp]->arrive_and_wait(t, file, line, block.context(t));
  const int source = int(lane) + source_offset;
  return source >= 0 && source < int(kWarpSize) ? slots[source] : bits;
}

}  // namespace cuda_emulation
}  // namespace localmamba
