// The weights loader (vramguard/weights_loader.hpp): plan, readers, verification.
#include "vramguard/weights_loader.hpp"

#include <cuda_runtime_api.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>

#include "checksum_hash.hpp"
#include "checksum_slots.hpp"
#include "cuda_call.hpp"
#include "raw_allocation.hpp"
#include "scoped_device.hpp"
#include "vramguard/error.hpp"
#ifdef VRAMGUARD_STAGING_FAULT
#include "staging_fault.hpp"
#endif

namespace vramguard {

namespace {

namespace cs = detail::checksum;
using Clock = cs::Clock;

constexpr std::size_t kMiB = std::size_t{1} << 20;
// A chunk is read this much at a time and each part hashed at once, while it is in the CPU's
// cache: the hash then costs no second trip through memory.
constexpr std::size_t kSubRead = kMiB;
constexpr unsigned kMaxReaders = 64;
constexpr unsigned kDefaultMaxReaders = 16;

// One copy's part inside one chunk: what is hashed at one word position, and copied.
struct Piece {
  std::uint64_t chunk_offset;
  std::uint64_t bytes;
  std::uint64_t device_offset;  // a multiple of 16
};

// A contiguous range of one file, read into one staging slot.
struct Chunk {
  std::uint32_t file;
  std::uint64_t file_offset;
  std::uint64_t bytes;
  std::size_t first_piece;
  std::size_t end_piece;
};

struct Plan {
  std::vector<Chunk> chunks;
  std::vector<Piece> pieces;
  cs::Lanes zero_words;  // the terms of the image's words that no copy touches
  std::uint64_t bytes_copied = 0;
};

std::string quoted(const std::string& path) { return "\"" + path + "\""; }

std::string errno_text(int error) {
  return std::error_code(error, std::generic_category()).message();
}

std::int64_t mtime_ns(const struct stat& st) {
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

// VG_ERR_FILE_CHANGED unless the file is still the one the caller validated.
void require_unchanged(const WeightsFileSpec& spec, const struct stat& st, const char* when) {
  std::string what;
  if (static_cast<std::uint64_t>(st.st_size) != spec.size) {
    what = "its size is " + std::to_string(st.st_size) + " bytes, not " + std::to_string(spec.size);
  } else if (mtime_ns(st) != spec.mtime_ns) {
    what = "its modification time changed";
  } else if (static_cast<std::uint64_t>(st.st_ino) != spec.inode ||
             static_cast<std::uint64_t>(st.st_dev) != spec.dev) {
    what = "the path names another file (inode or device differ)";
  } else {
    return;
  }
  throw Error(VG_ERR_FILE_CHANGED,
              "weights file " + quoted(spec.path) + " changed " + when + ": " + what);
}

class FileDescriptor {
 public:
  explicit FileDescriptor(const WeightsFileSpec& spec)
      : fd_(::open(spec.path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK)) {
    if (fd_ < 0) {
      throw Error(VG_ERR_IO,
                  "cannot open weights file " + quoted(spec.path) + ": " + errno_text(errno));
    }
  }
  ~FileDescriptor() { ::close(fd_); }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const noexcept { return fd_; }

  struct stat status(const WeightsFileSpec& spec) const {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      throw Error(VG_ERR_IO,
                  "cannot stat weights file " + quoted(spec.path) + ": " + errno_text(errno));
    }
    return st;
  }

 private:
  int fd_;
};

void out_of_range(const std::string& what) { throw Error(VG_ERR_OUT_OF_RANGE, what); }

// Checks every copy against its file and the image, and cuts the files into chunks of at most
// chunk_bytes. A chunk boundary inside a copy falls on a 16-byte word of the copy, so that each
// piece is hashed at whole word positions of the image; only a copy's last piece may end inside
// a word (the rest of that word is zero in the image: no two copies share a word).
Plan make_plan(const LoadRequest& request, std::size_t chunk_bytes) {
  std::vector<WeightsCopy> copies;
  copies.reserve(request.copies.size());
  for (const WeightsCopy& copy : request.copies) {
    if (copy.bytes == 0) continue;
    if (copy.file >= request.files.size()) {
      throw Error(VG_ERR_INVALID_ENUM, "a copy names file " + std::to_string(copy.file) + " of " +
                                           std::to_string(request.files.size()));
    }
    const WeightsFileSpec& file = request.files[copy.file];
    if (copy.file_offset > file.size || copy.bytes > file.size - copy.file_offset) {
      out_of_range("a copy of " + std::to_string(copy.bytes) + " bytes at offset " +
                   std::to_string(copy.file_offset) + " reaches past the end of " +
                   quoted(file.path) + " (" + std::to_string(file.size) + " bytes)");
    }
    if (copy.device_offset % cs::kWordBytes != 0) {
      out_of_range("a copy's device offset " + std::to_string(copy.device_offset) +
                   " is not a multiple of 16");
    }
    if (copy.device_offset > request.image_bytes ||
        copy.bytes > request.image_bytes - copy.device_offset) {
      out_of_range("a copy of " + std::to_string(copy.bytes) + " bytes to device offset " +
                   std::to_string(copy.device_offset) + " reaches past the image of " +
                   std::to_string(request.image_bytes) + " bytes");
    }
    copies.push_back(copy);
  }

  Plan plan;
  // Device side: disjoint ranges, and the zero words between them.
  std::sort(copies.begin(), copies.end(), [](const WeightsCopy& a, const WeightsCopy& b) {
    return a.device_offset < b.device_offset;
  });
  std::uint64_t next_word = 0;
  std::uint64_t device_end = 0;
  for (const WeightsCopy& copy : copies) {
    if (copy.device_offset < device_end) out_of_range("two copies overlap in the image");
    const std::uint64_t first = copy.device_offset / cs::kWordBytes;
    cs::add_zero_words(next_word, first - next_word, plan.zero_words);
    device_end = copy.device_offset + copy.bytes;
    next_word = (device_end + cs::kWordBytes - 1) / cs::kWordBytes;
    plan.bytes_copied += copy.bytes;
  }
  const std::uint64_t image_words = (request.image_bytes + cs::kWordBytes - 1) / cs::kWordBytes;
  cs::add_zero_words(next_word, image_words - next_word, plan.zero_words);

  // File side: each file front to back, in chunks.
  std::stable_sort(copies.begin(), copies.end(), [](const WeightsCopy& a, const WeightsCopy& b) {
    return a.file != b.file ? a.file < b.file : a.file_offset < b.file_offset;
  });
  for (std::size_t i = 1; i < copies.size(); ++i) {
    const WeightsCopy& before = copies[i - 1];
    if (before.file == copies[i].file && before.file_offset + before.bytes > copies[i].file_offset)
      out_of_range("two copies overlap in " + quoted(request.files[before.file].path));
  }
  std::size_t i = 0;
  std::uint64_t resume = 0;  // where the next chunk starts inside copies[i]
  while (i < copies.size()) {
    const std::uint32_t file = copies[i].file;
    const std::uint64_t start = std::max(resume, copies[i].file_offset);
    const std::uint64_t limit = start + chunk_bytes;
    Chunk chunk{file, start, 0, plan.pieces.size(), 0};
    while (i < copies.size() && copies[i].file == file && copies[i].file_offset < limit) {
      const WeightsCopy& copy = copies[i];
      const std::uint64_t copy_end = copy.file_offset + copy.bytes;
      const std::uint64_t from = std::max(copy.file_offset, start);
      std::uint64_t to = std::min(copy_end, limit);
      if (to < copy_end) to -= (to - copy.file_offset) % cs::kWordBytes;
      if (to <= from) break;  // the copy starts within a word of the limit: the next chunk's
      plan.pieces.push_back(
          Piece{from - start, to - from, copy.device_offset + (from - copy.file_offset)});
      if (to < copy_end) {
        resume = to;
        break;
      }
      ++i;
      resume = 0;
    }
    chunk.end_piece = plan.pieces.size();
    const Piece& last = plan.pieces.back();
    chunk.bytes = last.chunk_offset + last.bytes;
    plan.chunks.push_back(chunk);
  }
  return plan;
}

// Hashes the pieces of one chunk as its bytes arrive: hash_upto(n) adds every whole word of the
// pieces within the first n bytes of the staging slot (a piece's partial last word once the
// whole piece is there).
class ChunkHasher {
 public:
  ChunkHasher(const Plan& plan, const Chunk& chunk, const unsigned char* staging, cs::Lanes& lanes)
      : plan_(plan),
        staging_(staging),
        lanes_(lanes),
        piece_(chunk.first_piece),
        end_(chunk.end_piece) {}

  void hash_upto(std::uint64_t available) {
    for (; piece_ < end_; ++piece_, hashed_ = 0) {
      const Piece& piece = plan_.pieces[piece_];
      if (available <= piece.chunk_offset) return;
      const std::uint64_t there = std::min(available - piece.chunk_offset, piece.bytes);
      const std::uint64_t upto = there == piece.bytes ? there : there - there % cs::kWordBytes;
      if (upto > hashed_) {
        cs::add_words(staging_ + piece.chunk_offset + hashed_, upto - hashed_,
                      piece.device_offset / cs::kWordBytes + hashed_ / cs::kWordBytes, lanes_);
        hashed_ = upto;
      }
      if (hashed_ < piece.bytes) return;
    }
  }

 private:
  const Plan& plan_;
  const unsigned char* staging_;
  cs::Lanes& lanes_;
  std::size_t piece_;
  std::size_t end_;
  std::uint64_t hashed_ = 0;
};

// VG_ERR_TIMEOUT for a load whose deadline passed while `what`.
[[noreturn]] void load_timed_out(std::chrono::milliseconds timeout, const std::string& what) {
  throw Error(VG_ERR_TIMEOUT,
              "the load's " + std::to_string(timeout.count()) + " ms passed " + what);
}

// What the readers of one load share.
struct LoadState {
  LoadState(const LoadRequest& request, const Plan& plan,
            const std::vector<std::unique_ptr<FileDescriptor>>& files,
            std::chrono::milliseconds timeout, Clock::time_point deadline)
      : request(request), plan(plan), files(files), timeout(timeout), deadline(deadline) {}

  const LoadRequest& request;
  const Plan& plan;
  const std::vector<std::unique_ptr<FileDescriptor>>& files;
  const std::chrono::milliseconds timeout;
  const Clock::time_point deadline;
  std::atomic<std::size_t> next_chunk{0};
  std::atomic<bool> failed{false};
  std::mutex mutex;  // guards the two below
  std::exception_ptr error;
  cs::Lanes lanes;

  void fail(std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!error) error = e;
    failed.store(true, std::memory_order_relaxed);
  }
};

}  // namespace

struct WeightsLoader::Impl {
  int device;
  unsigned readers;
  std::size_t chunk_bytes;
  unsigned char* staging = nullptr;              // 2 * readers slots of chunk_bytes, pinned
  std::vector<cudaStream_t> streams;             // one per reader, non-blocking
  std::vector<cudaEvent_t> slot_copied;          // per slot: recorded after the copies out of it
  std::vector<cudaEvent_t> stream_done;          // per stream: recorded after a load's work on it
  cudaEvent_t pool_stream_mark = nullptr;        // recorded on the pool's stream as a load starts
  std::timed_mutex load_mutex;                   // one load at a time
  std::atomic<std::uint64_t> progress_done{0};   // bytes read and queued by the current load
  std::atomic<std::uint64_t> progress_total{0};  // bytes the current (or last) load copies
  // Under load_mutex: a load returned while its work may still run on the GPU (writing an image,
  // reading staging). Cleared once the streams are seen idle.
  bool work_left = false;

  unsigned char* slot(unsigned reader, unsigned which) const {
    return staging + (std::size_t{reader} * 2 + which) * chunk_bytes;
  }

  // Within the device's ScopedDevice, under load_mutex: whether every stream has finished its
  // work, without waiting. Throws CudaError (a broken context, say).
  bool streams_idle() const {
    for (cudaStream_t stream : streams) {
      const cudaError_t state = cudaStreamQuery(stream);
      if (state == cudaErrorNotReady) return false;
      detail::check(state, "cudaStreamQuery");
    }
    return true;
  }

  // Within the device's ScopedDevice, under load_mutex: waits until every stream has finished its
  // work, or `deadline`. True when finished. Otherwise the work is left running, fenced (below),
  // and work_left stays set. Throws CudaError.
  bool settle(Clock::time_point deadline) {
    work_left = true;
    try {
      for (cudaStream_t stream : streams) {
        if (!cs::wait_for_stream(stream, deadline)) {
          fence();
          return false;
        }
      }
    } catch (...) {
      fence();
      throw;
    }
    work_left = false;
    return true;
  }

  // Work left running may still write the image: the pool's stream waits for it, so that a Pool
  // image freed now (cudaFreeAsync there) is handed out again only after it, and work the caller
  // queues there, or on a blocking stream, later runs after it. Nothing here waits on the host.
  void fence() noexcept {
    for (std::size_t s = 0; s < streams.size(); ++s) {
      if (cudaEventRecord(stream_done[s], streams[s]) != cudaSuccess ||
          cudaStreamWaitEvent(detail::pool_stream(), stream_done[s], 0) != cudaSuccess) {
        (void)cudaGetLastError();  // a broken context: nothing runs on it any more
      }
    }
  }

  // Within the device's ScopedDevice. Never waits for work left running: while some may still
  // read the staging, the staging, streams and events stay allocated, to the end of the process.
  void release() noexcept {
    if (work_left) {
      try {
        if (!streams_idle()) return;
      } catch (...) {
        // A broken context: nothing runs on it any more; what can be released goes.
      }
    }
    if (pool_stream_mark != nullptr) (void)cudaEventDestroy(pool_stream_mark);
    pool_stream_mark = nullptr;
    for (cudaEvent_t event : slot_copied) (void)cudaEventDestroy(event);
    for (cudaEvent_t event : stream_done) (void)cudaEventDestroy(event);
    for (cudaStream_t stream : streams) {
      (void)cudaStreamSynchronize(stream);
      (void)cudaStreamDestroy(stream);
    }
    if (staging != nullptr) (void)cudaFreeHost(staging);
    slot_copied.clear();
    stream_done.clear();
    streams.clear();
    staging = nullptr;
  }

  void read_chunks(unsigned reader, LoadState& state);
};

void WeightsLoader::Impl::read_chunks(unsigned reader, LoadState& state) {
  try {
    detail::ScopedDevice scope(device);
    const LoadRequest& request = state.request;
    auto* const dst = static_cast<unsigned char*>(request.device_ptr);
    const bool hash = request.verify && !request.expected;
    cs::Lanes lanes;
    bool in_flight[2] = {false, false};
    for (unsigned turn = 0;; turn ^= 1) {
      if (state.failed.load(std::memory_order_relaxed)) break;
      const std::size_t index = state.next_chunk.fetch_add(1, std::memory_order_relaxed);
      if (index >= state.plan.chunks.size()) break;
      const Chunk& chunk = state.plan.chunks[index];
      unsigned char* buffer = slot(reader, turn);
      cudaEvent_t copied = slot_copied[reader * 2 + turn];
      if (Clock::now() >= state.deadline) load_timed_out(state.timeout, "while reading the files");
      // The slot's previous copies must have left it before it is overwritten.
      if (in_flight[turn] && !cs::wait_for_event(copied, state.deadline)) {
        load_timed_out(state.timeout, "before GPU " + std::to_string(device) +
                                          " copied a staging slot out (busy or hung)");
      }
      in_flight[turn] = false;

      const WeightsFileSpec& spec = request.files[chunk.file];
      const int fd = state.files[chunk.file]->get();
      ChunkHasher hasher(state.plan, chunk, buffer, lanes);
      for (std::uint64_t done = 0; done < chunk.bytes;) {
        const std::size_t want =
            static_cast<std::size_t>(std::min<std::uint64_t>(kSubRead, chunk.bytes - done));
        const ssize_t got =
            ::pread(fd, buffer + done, want, static_cast<off_t>(chunk.file_offset + done));
        if (got < 0) {
          if (errno == EINTR) continue;
          throw Error(VG_ERR_IO, "cannot read weights file " + quoted(spec.path) + " at byte " +
                                     std::to_string(chunk.file_offset + done) + ": " +
                                     errno_text(errno));
        }
        if (got == 0) {
          throw Error(VG_ERR_FILE_CHANGED, "weights file " + quoted(spec.path) + " ended at byte " +
                                               std::to_string(chunk.file_offset + done) +
                                               " while being read; it was " +
                                               std::to_string(spec.size) + " bytes when validated");
        }
        done += static_cast<std::uint64_t>(got);
        if (hash) hasher.hash_upto(done);
      }
#ifdef VRAMGUARD_STAGING_FAULT
      // The tests' build of the core only: memory corrupted between the hash and the DMA.
      if (index == 0 && testing::take_staging_fault()) {
        buffer[state.plan.pieces[chunk.first_piece].chunk_offset] ^= 0xFF;
      }
#endif

      // Copies, neighbouring pieces merged when they are contiguous on both sides.
      for (std::size_t p = chunk.first_piece; p < chunk.end_piece;) {
        Piece run = state.plan.pieces[p++];
        while (p < chunk.end_piece &&
               state.plan.pieces[p].chunk_offset == run.chunk_offset + run.bytes &&
               state.plan.pieces[p].device_offset == run.device_offset + run.bytes) {
          run.bytes += state.plan.pieces[p++].bytes;
        }
        VG_CUDA_CHECK(cudaMemcpyAsync(dst + run.device_offset, buffer + run.chunk_offset, run.bytes,
                                      cudaMemcpyHostToDevice, streams[reader]));
      }
      VG_CUDA_CHECK(cudaEventRecord(copied, streams[reader]));
      in_flight[turn] = true;
      std::uint64_t queued = 0;
      for (std::size_t p = chunk.first_piece; p < chunk.end_piece; ++p)
        queued += state.plan.pieces[p].bytes;
      progress_done.fetch_add(queued, std::memory_order_relaxed);
    }
    std::lock_guard<std::mutex> lock(state.mutex);
    state.lanes.lane0 += lanes.lane0;
    state.lanes.lane1 += lanes.lane1;
  } catch (...) {
    state.fail(std::current_exception());
  }
}

WeightsLoader::WeightsLoader(int device, const LoaderOptions& options)
    : impl_(std::make_unique<Impl>()) {
  unsigned readers = options.readers;
  if (readers == 0) {
    readers = std::clamp(std::thread::hardware_concurrency(), 1u, kDefaultMaxReaders);
  }
  if (readers > kMaxReaders) {
    throw Error(VG_ERR_INVALID_SIZE, std::to_string(readers) + " readers asked for; at most " +
                                         std::to_string(kMaxReaders));
  }
  const std::size_t per_slot = options.staging_bytes / (std::size_t{2} * readers) / kMiB * kMiB;
  if (per_slot < kMiB) {
    throw Error(VG_ERR_INVALID_SIZE, "staging of " + std::to_string(options.staging_bytes) +
                                         " bytes gives " + std::to_string(readers) +
                                         " readers less than 1 MiB per slot (two each)");
  }
  impl_->device = device;
  impl_->readers = readers;
  impl_->chunk_bytes = per_slot;
  detail::ScopedDevice scope(device);
  try {
    void* staging = nullptr;
    VG_CUDA_CHECK(cudaHostAlloc(&staging, per_slot * 2 * readers, cudaHostAllocPortable));
    impl_->staging = static_cast<unsigned char*>(staging);
    VG_CUDA_CHECK(cudaEventCreateWithFlags(&impl_->pool_stream_mark, cudaEventDisableTiming));
    for (unsigned r = 0; r < readers; ++r) {
      cudaStream_t stream = nullptr;
      VG_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
      impl_->streams.push_back(stream);
      cudaEvent_t done = nullptr;
      VG_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
      impl_->stream_done.push_back(done);
      for (int which = 0; which < 2; ++which) {
        cudaEvent_t event = nullptr;
        VG_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
        impl_->slot_copied.push_back(event);
      }
    }
  } catch (...) {
    impl_->release();
    throw;
  }
}

WeightsLoader::~WeightsLoader() noexcept {
  try {
    detail::ScopedDevice scope(impl_->device);
    impl_->release();
  } catch (...) {
    // No context to release into (the driver is gone): the process's end returns it all.
  }
}

int WeightsLoader::device() const noexcept { return impl_->device; }
unsigned WeightsLoader::readers() const noexcept { return impl_->readers; }
std::size_t WeightsLoader::chunk_bytes() const noexcept { return impl_->chunk_bytes; }
LoadProgress WeightsLoader::progress() const noexcept {
  return LoadProgress{impl_->progress_done.load(std::memory_order_relaxed),
                      impl_->progress_total.load(std::memory_order_relaxed)};
}
std::size_t WeightsLoader::staging_bytes() const noexcept {
  return impl_->chunk_bytes * 2 * impl_->readers;
}

std::chrono::milliseconds default_load_timeout(std::uint64_t image_bytes) noexcept {
  constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;
  const std::uint64_t per_gib = static_cast<std::uint64_t>(kLoadTimeoutPerGiB.count());
  const std::uint64_t scaled = image_bytes / kGiB * per_gib + image_bytes % kGiB * per_gib / kGiB;
  // Cut at 2^40 ms (35 years), as every timeout is, so that no sum overflows the clock.
  return kLoadTimeoutFloor +
         std::chrono::milliseconds(std::min<std::uint64_t>(scaled, std::uint64_t{1} << 40));
}

bool WeightsLoader::idle() {
  std::unique_lock<std::timed_mutex> running(impl_->load_mutex, std::try_to_lock);
  if (!running.owns_lock()) return false;  // a load is running
  if (!impl_->work_left) return true;
  detail::ScopedDevice scope(impl_->device);
  if (!impl_->streams_idle()) return false;
  impl_->work_left = false;
  return true;
}

LoadResult WeightsLoader::load(const LoadRequest& request) {
  const auto started = Clock::now();
  if (request.device_ptr == nullptr) throw Error(VG_ERR_NULL_ARGUMENT, "device_ptr is null");
  if (request.image_bytes == 0) throw Error(VG_ERR_INVALID_SIZE, "an image of 0 bytes");
  const std::chrono::milliseconds timeout =
      request.timeout.value_or(default_load_timeout(request.image_bytes));
  const Clock::time_point deadline = cs::deadline_after(timeout);
  const Plan plan = make_plan(request, impl_->chunk_bytes);

  std::unique_lock<std::timed_mutex> one_load(impl_->load_mutex, deadline);
  if (!one_load.owns_lock()) load_timed_out(timeout, "while another load of this loader ran");
  detail::ScopedDevice scope(impl_->device);
  // An earlier load's work left running may still read the staging this load fills.
  if (impl_->work_left && !impl_->settle(deadline)) {
    load_timed_out(timeout,
                   "while the work of an earlier load, which timed out, still ran on GPU " +
                       std::to_string(impl_->device) + "; nothing of this load started");
  }
  impl_->progress_done.store(0, std::memory_order_relaxed);
  impl_->progress_total.store(plan.bytes_copied, std::memory_order_relaxed);
  std::vector<std::unique_ptr<FileDescriptor>> files;
  for (const WeightsFileSpec& spec : request.files) {
    files.push_back(std::make_unique<FileDescriptor>(spec));
    require_unchanged(spec, files.back()->status(spec), "since it was validated");
  }

  LoadState state(request, plan, files, timeout, deadline);
  LoadResult result;
  cudaStream_t first = impl_->streams[0];
  // From the first enqueue on, every way out passes the catch below: the load's work is over
  // when it returns, unless it is still running at the deadline (then it is fenced, see
  // Impl::fence, and the load fails with VG_ERR_TIMEOUT or the CUDA error that stopped it).
  try {
    // The image may be Pool memory: allocated on the pool's stream, perhaps just freed there by
    // an owner whose kernels still read it, and handed out again in that stream's order, not in
    // the loader's. So the loader's streams write only after everything queued on the pool's
    // stream so far (and, through it, the earlier work of every blocking stream) is done.
    VG_CUDA_CHECK(cudaEventRecord(impl_->pool_stream_mark, detail::pool_stream()));
    VG_CUDA_CHECK(cudaStreamWaitEvent(first, impl_->pool_stream_mark, 0));
    // Zero the image first (padding between tensors is then defined), and make every reader's
    // stream wait for it.
    VG_CUDA_CHECK(cudaMemsetAsync(request.device_ptr, 0, request.image_bytes, first));
    VG_CUDA_CHECK(cudaEventRecord(impl_->slot_copied[0], first));
    for (cudaStream_t stream : impl_->streams) {
      VG_CUDA_CHECK(cudaStreamWaitEvent(stream, impl_->slot_copied[0], 0));
    }

    const unsigned readers = static_cast<unsigned>(
        std::min<std::size_t>(impl_->readers, std::max<std::size_t>(plan.chunks.size(), 1)));
    std::vector<std::thread> threads;
    threads.reserve(readers);
    try {
      for (unsigned r = 0; r < readers; ++r)
        threads.emplace_back([this, r, &state] { impl_->read_chunks(r, state); });
    } catch (...) {
      state.fail(std::current_exception());  // no thread for this reader: the others stop too
    }
    for (std::thread& thread : threads) thread.join();
    if (state.error) std::rethrow_exception(state.error);

    // The device checksum on the first stream, after every stream's copies: once it is seen
    // complete, so is everything of this load.
    for (std::size_t s = 1; s < impl_->streams.size(); ++s) {
      VG_CUDA_CHECK(cudaEventRecord(impl_->stream_done[s], impl_->streams[s]));
      VG_CUDA_CHECK(cudaStreamWaitEvent(first, impl_->stream_done[s], 0));
    }
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() < 1) load_timed_out(timeout, "before the device checksum could start");
    result.checksum =
        device_checksum(request.device_ptr, request.image_bytes, impl_->device, left, first);
  } catch (const CudaError&) {
    (void)impl_->settle(deadline);
    throw;
  } catch (const std::exception& e) {
    // A failure that is no timeout still waits for the load's work, up to the deadline; work
    // still running then makes it a timeout, so that only a timeout leaves work behind.
    if (impl_->settle(deadline)) throw;
    const Error* error = dynamic_cast<const Error*>(&e);
    if (error != nullptr && error->status() == VG_ERR_TIMEOUT) throw;
    load_timed_out(timeout, std::string("before GPU ") + std::to_string(impl_->device) +
                                " finished the work of a load that had failed: " + e.what());
  } catch (...) {
    if (impl_->settle(deadline)) throw;
    load_timed_out(timeout, std::string("before GPU ") + std::to_string(impl_->device) +
                                " finished the work of a load that had failed");
  }

  for (std::size_t f = 0; f < files.size(); ++f) {
    require_unchanged(request.files[f], files[f]->status(request.files[f]), "while it was loaded");
  }
  result.bytes_copied = plan.bytes_copied;
  std::optional<Checksum> expected = request.expected;
  if (!expected && request.verify) {
    const cs::Lanes& lanes = state.lanes;
    const cs::Folded folded =
        cs::finalize(lanes.lane0 + plan.zero_words.lane0, lanes.lane1 + plan.zero_words.lane1,
                     request.image_bytes);
    expected = Checksum{folded.lo, folded.hi};
  }
  if (expected) {
    result.compared = true;
    if (*expected != result.checksum) {
      throw Error(VG_ERR_WEIGHTS_CORRUPTED,
                  "the weights on the device (checksum " + result.checksum.to_hex() +
                      ") differ from " +
                      (request.expected ? "the checksum expected (" : "the bytes read (checksum ") +
                      expected->to_hex() + ")");
    }
  }
  result.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  return result;
}

}  // namespace vramguard
