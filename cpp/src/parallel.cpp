#include "localmamba/parallel.h"

#include <algorithm>
#include <cstddef>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <new>
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <unistd.h>
#endif
#if defined(__linux__)
#include <dlfcn.h>
#include <link.h>

#include <cstring>
#include <string>
#endif
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

namespace localmamba {
namespace {

int default_num_threads() {
  if (const char* env = std::getenv("LOCALMAMBA_NUM_THREADS")) {
    const int value = std::atoi(env);
    if (value > 0) return value;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

thread_local bool tls_inside_parallel_region = false;

// The loop every thread of a job runs, on either pool: take the next task index until none is left;
// the first exception is kept (under error_mutex) for the caller to rethrow, later ones dropped.
void take_tasks(std::atomic<int64_t>& next, int64_t num_tasks, const std::function<void(int64_t)>& task,
                std::mutex& error_mutex, std::exception_ptr& error) {
  const bool was_inside = tls_inside_parallel_region;
  tls_inside_parallel_region = true;
  for (int64_t i = next.fetch_add(1); i < num_tasks; i = next.fetch_add(1)) {
    try {
      task(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  }
  tls_inside_parallel_region = was_inside;
}

// Protocol: run() publishes a job (task, task count, generation) under `mutex_`. A worker joins
// the job only while it is published and only once per generation, registering itself in
// `active_workers_` under the same lock; it reads the job's fields into locals when it joins.
// When the caller has drained the task counter it unpublishes the job (no further joins) and
// waits until every worker that joined has left. Workers that never woke up for a job simply
// miss it: the caller and the others have done its tasks. So no count depends on how many
// workers exist or when they were started, and resize() (which holds `run_mutex_`, like run())
// can replace the workers between jobs without any of them seeing a stale job.
class ThreadPool {
 public:
  explicit ThreadPool(int num_threads) { resize(num_threads); }
  ~ThreadPool() { stop_workers(); }

  int num_threads() const { return num_threads_.load(); }

  void resize(int num_threads) {
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    stop_workers();
    num_threads_.store(std::max(1, num_threads));
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = false;
    }
    for (int i = 1; i < num_threads_.load(); ++i) workers_.emplace_back([this] { worker_loop(); });
  }

  // Runs task(i) for i in [0, num_tasks) using the caller and the workers.
  void run(int64_t num_tasks, const std::function<void(int64_t)>& task) {
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    const Job job{&task, num_tasks};
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = job;
      next_task_.store(0);
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    drain(job);
    std::unique_lock<std::mutex> lock(mutex_);
    job_ = Job{};
    done_.wait(lock, [this] { return active_workers_ == 0; });
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  struct Job {
    const std::function<void(int64_t)>* task = nullptr;
    int64_t num_tasks = 0;
  };

  void drain(const Job& job) { take_tasks(next_task_, job.num_tasks, *job.task, mutex_, error_); }

  void worker_loop() {
    uint64_t joined_generation = 0;
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || (job_.task != nullptr && generation_ != joined_generation); });
        if (stopping_) return;
        joined_generation = generation_;
        job = job_;
        ++active_workers_;
      }
      drain(job);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        --active_workers_;
      }
      done_.notify_all();
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& worker : workers_) worker.join();
    workers_.clear();
  }

  std::atomic<int> num_threads_{1};
  std::vector<std::thread> workers_;
  std::mutex run_mutex_;  // one job or resize at a time
  std::mutex mutex_;      // guards everything below except next_task_
  std::condition_variable wake_;
  std::condition_variable done_;
  Job job_;  // the published job; empty while none is open to workers
  std::atomic<int64_t> next_task_{0};
  int active_workers_ = 0;
  uint64_t generation_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
};

// The pool is created on first use and deliberately never destroyed: joining workers from a
// static destructor at interpreter exit races with other teardown, and after fork() the
// parent's workers do not exist in the child, so the child must start a fresh pool instead.
std::atomic<ThreadPool*> g_pool{nullptr};
std::mutex g_pool_mutex;
std::atomic<int> g_requested_threads{0};  // 0 = default

void forget_pool_in_forked_child() {
  g_pool.store(nullptr);  // the parent's pool (and its threads) is leaked on purpose
  new (&g_pool_mutex) std::mutex();
}

#if defined(__unix__) || defined(__APPLE__)
const int g_atfork_registered = pthread_atfork(nullptr, nullptr, forget_pool_in_forked_child);
#endif

ThreadPool& pool() {
  ThreadPool* current = g_pool.load(std::memory_order_acquire);
  if (current == nullptr) {
    std::lock_guard<std::mutex> lock(g_pool_mutex);
    current = g_pool.load(std::memory_order_acquire);
    if (current == nullptr) {
      const int requested = g_requested_threads.load();
      current = new ThreadPool(requested > 0 ? requested : default_num_threads());
      g_pool.store(current, std::memory_order_release);
    }
  }
  return *current;
}

// ---- running on the process's OpenMP team -----------------------------------------------------
//
// PyTorch's CPU ops run on an OpenMP team, and after each parallel region its workers spin for a
// while waiting for the next one. A second pool of our own then shares the cores with spinning
// threads: on 2 cores the scan kernels ran ~1.5x slower inside a training step than alone. So when
// the process has already loaded an OpenMP runtime (libgomp, or a runtime with its GOMP entry
// points), parallel_for runs its blocks on that runtime's team through GOMP_parallel -- the ABI
// GCC emits for `#pragma omp parallel` -- found with dlsym; the project neither links nor includes
// OpenMP. Without a loaded runtime (C++ tests, other hosts), in a forked child (the runtime's team
// does not survive fork), or with LOCALMAMBA_THREAD_POOL=own, the own pool runs them. The block
// split is the same either way, so results do not change.
class OpenMpTeam {
 public:
  using ParallelFn = void (*)(void (*)(void*), void*, unsigned, unsigned);
  using IntFn = int (*)();

  ParallelFn parallel = nullptr;
  IntFn in_parallel = nullptr;

  // Runs task(b) for b in [0, num_blocks) on up to `threads` team threads.
  void run(int64_t num_blocks, int threads, const std::function<void(int64_t)>& task) const {
    Job job{&task, num_blocks};
    parallel(&OpenMpTeam::body, &job, static_cast<unsigned>(threads), 0);
    if (job.error) std::rethrow_exception(job.error);
  }

 private:
  struct Job {
    const std::function<void(int64_t)>* task;
    int64_t num_blocks;
    std::atomic<int64_t> next{0};
    std::mutex error_mutex;
    std::exception_ptr error;
    Job(const std::function<void(int64_t)>* t, int64_t n) : task(t), num_blocks(n) {}
  };

  // Each team thread takes blocks until none is left (the team may be smaller than asked for).
  static void body(void* data) {
    Job& job = *static_cast<Job*>(data);
    take_tasks(job.next, job.num_blocks, *job.task, job.error_mutex, job.error);
  }
};

#if defined(__linux__)
// The first loaded shared object whose file name starts with one of the OpenMP runtimes' names.
int find_openmp_runtime(struct dl_phdr_info* info, size_t, void* out) {
  const char* path = info->dlpi_name;
  if (!path || !*path) return 0;
  const char* base = std::strrchr(path, '/');
  base = base ? base + 1 : path;
  for (const char* name : {"libgomp", "libiomp5", "libomp"}) {
    if (std::strncmp(base, name, std::strlen(name)) == 0) {
      *static_cast<std::string*>(out) = path;
      return 1;
    }
  }
  return 0;
}

OpenMpTeam load_openmp_team() {
  OpenMpTeam team;
  std::string path;
  dl_iterate_phdr(find_openmp_runtime, &path);
  if (path.empty()) return team;
  void* handle = dlopen(path.c_str(), RTLD_LAZY | RTLD_NOLOAD);  // already loaded: no new library
  if (!handle) return team;
  auto parallel = reinterpret_cast<OpenMpTeam::ParallelFn>(dlsym(handle, "GOMP_parallel"));
  auto in_parallel = reinterpret_cast<OpenMpTeam::IntFn>(dlsym(handle, "omp_in_parallel"));
  if (parallel && in_parallel) team.parallel = parallel, team.in_parallel = in_parallel;
  return team;
}
// How many shared objects the process has loaded so far (glibc's running count, read from the first
// object's entry: O(1)); 0 when the C library does not say.
int read_load_count(struct dl_phdr_info* info, size_t size, void* out) {
  const bool has_count = size >= offsetof(struct dl_phdr_info, dlpi_adds) + sizeof(info->dlpi_adds);
  *static_cast<unsigned long long*>(out) = has_count ? info->dlpi_adds : 0;
  return 1;
}

unsigned long long loaded_object_count() {
  unsigned long long count = 0;
  dl_iterate_phdr(read_load_count, &count);
  return count;
}
#else
OpenMpTeam load_openmp_team() { return OpenMpTeam{}; }
unsigned long long loaded_object_count() { return 0; }
#endif

// The team, once found; until then the library may be imported before the framework loads its
// runtime (e.g. `import localmamba` before `import torch`), so the search runs again whenever the
// process has loaded more shared objects since the last one.
std::atomic<const OpenMpTeam*> g_team{nullptr};
std::mutex g_team_mutex;
OpenMpTeam g_team_storage;
unsigned long long g_searched_at = ~0ull;  // loaded-object count at the last search
#if defined(__unix__) || defined(__APPLE__)
const pid_t g_team_pid = getpid();  // the team is only used by the process that found it
#endif

const OpenMpTeam* find_openmp_team() {
  static const bool own_only = [] {
    const char* mode = std::getenv("LOCALMAMBA_THREAD_POOL");
    return mode && std::strcmp(mode, "own") == 0;
  }();
  if (own_only) return nullptr;
  if (const OpenMpTeam* team = g_team.load(std::memory_order_acquire)) return team;
  std::lock_guard<std::mutex> lock(g_team_mutex);
  const unsigned long long loaded = loaded_object_count();
  if (loaded != g_searched_at || loaded == 0) {
    g_searched_at = loaded;
    OpenMpTeam team = load_openmp_team();
    if (team.parallel) {
      g_team_storage = team;
      g_team.store(&g_team_storage, std::memory_order_release);
    }
  }
  return g_team.load(std::memory_order_acquire);
}

// The process's OpenMP team, or null when parallel_for runs on the own pool. Called from inside an
// OpenMP region (e.g. from a PyTorch op's worker), the own pool's rules apply: nesting stays serial
// there, and GOMP would run a nested region on one thread anyway.
const OpenMpTeam* shared_openmp_team() {
  const OpenMpTeam* team = find_openmp_team();
  if (!team) return nullptr;
#if defined(__unix__) || defined(__APPLE__)
  if (getpid() != g_team_pid) return nullptr;
#endif
  if (team->in_parallel()) return nullptr;
  return team;
}

}  // namespace

int get_num_threads() { return pool().num_threads(); }

void set_num_threads(int num_threads) {
  // From inside a job the resize would wait for that job (and join the calling worker) forever.
  if (tls_inside_parallel_region) {
    throw std::logic_error("set_num_threads cannot be called from inside parallel_for");
  }
  g_requested_threads.store(num_threads > 0 ? num_threads : 0);
  if (num_threads < 1) num_threads = default_num_threads();
  if (num_threads != pool().num_threads()) pool().resize(num_threads);
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int threads = tls_inside_parallel_region ? 1 : get_num_threads();
  const int64_t max_blocks = (n + grain - 1) / grain;
  const int64_t num_blocks = std::min<int64_t>(max_blocks, threads);
  if (num_blocks <= 1) {
    fn(0, n);
    return;
  }
  const int64_t block = (n + num_blocks - 1) / num_blocks;
  const std::function<void(int64_t)> task = [&](int64_t b) {
    const int64_t begin = b * block;
    const int64_t end = std::min(n, begin + block);
    if (begin < end) fn(begin, end);
  };
  if (const OpenMpTeam* team = shared_openmp_team()) {
    team->run(num_blocks, threads, task);
  } else {
    pool().run(num_blocks, task);
  }
}

const char* thread_pool_kind() { return shared_openmp_team() ? "openmp-shared" : "own"; }

}  // namespace localmamba
