// W1 + I1: filling one device allocation with model weights read from files, at the speed of the
// PCIe link, and proving on the way that what landed is exactly what was read.
//
// The path of every byte: a reader thread `pread`s a chunk of a file into one of its two slots
// of pinned staging memory (allocated once per loader), hashes it while it is still in the CPU's
// cache, and queues an asynchronous copy of it on the reader's own stream; the slot is reused only
// once the event recorded after that copy has completed. Several readers run at once (reading from
// the page cache is parallel work), so reads, hashes and copies of different chunks overlap.
//
// The image: the allocation's first `image_bytes` bytes are zeroed, then each copy lands at its
// device offset. Nothing is written before the work queued so far on the legacy default stream of
// the device is done: kind Pool is allocated and freed there, and the pool hands a block out again
// in that stream's order, so the image's previous owner (a kernel still reading it, on that stream
// or on a blocking stream, which the legacy stream waits for) is done with it first. The integrity
// checksum (checksum_hash.hpp) is a sum of per-word terms keyed by each 16-byte word's position, so
// the readers' partial sums of the bytes they read, plus the terms of the zero words no copy
// touches, add up to the checksum of the whole image on the host. After the copies, the device
// checksum of the image is computed and compared: a mismatch is VG_ERR_WEIGHTS_CORRUPTED. The
// verified value is the slot's integrity reference.
//
// What the loader does not check: the file format. The caller (the Rust crate's weights module)
// validates the files and computes the copies; the loader checks only what makes its own work
// safe: every range inside its file and inside the image, device offsets 16-byte aligned and
// device ranges disjoint, and that each file is still the one the caller validated.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vramguard/checksum.hpp"

namespace vramguard {

// A file to read, as the caller validated it: a change of any of these before or during the load
// is VG_ERR_FILE_CHANGED.
struct WeightsFileSpec {
  std::string path;
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;  // st_mtim as nanoseconds since the epoch
  std::uint64_t inode = 0;
  std::uint64_t dev = 0;
};

// `bytes` bytes at `file_offset` of file `file` go to `device_offset` of the image.
struct WeightsCopy {
  std::uint32_t file = 0;
  std::uint64_t file_offset = 0;
  std::uint64_t bytes = 0;
  std::uint64_t device_offset = 0;  // a multiple of 16
};

struct LoaderOptions {
  // Pinned host memory for staging, all readers together: 128 MiB by default (with 16 readers,
  // two 4 MiB slots each: on the H200 host as fast as larger staging, BENCHMARKS.md). Each reader
  // has two slots of staging_bytes / (2 * readers) bytes (rounded down to a multiple of 1 MiB; at
  // least 1 MiB each).
  std::size_t staging_bytes = std::size_t{128} << 20;
  // Reader threads; 0: one per hardware thread, at most 16.
  unsigned readers = 0;
};

// How long a load may take unless its request says (VG_LOAD_TIMEOUT_FLOOR_MS and
// VG_LOAD_TIMEOUT_MS_PER_GIB): 60 s plus 10 s per GiB of image, about a tenth of a GB/s, far
// below the slowest loads measured (one verifying reader, 0.85 GB/s; a cold disk, 1.9 GB/s). Only
// a GPU that is hung or held by other work, or storage that has all but stopped, reaches it.
inline constexpr std::chrono::milliseconds kLoadTimeoutFloor{60'000};
inline constexpr std::chrono::milliseconds kLoadTimeoutPerGiB{10'000};
std::chrono::milliseconds default_load_timeout(std::uint64_t image_bytes) noexcept;

struct LoadRequest {
  void* device_ptr = nullptr;     // device memory of the loader's device
  std::uint64_t image_bytes = 0;  // bytes zeroed, filled and checksummed from device_ptr
  std::vector<WeightsFileSpec> files;
  std::vector<WeightsCopy> copies;
  // Hash the bytes read on the host and compare with the device (the default). Off: the device
  // checksum is still computed and returned, but nothing is compared with it, unless `expected`.
  bool verify = true;
  // A checksum known for this image (from an earlier verified load of the same files): compared
  // with the device checksum instead of hashing on the host.
  std::optional<Checksum> expected;
  // How long the whole load may take, counted from the call: waiting for another load of the
  // loader, reading, copying and the device checksum. At least 1 ms (Error(VG_ERR_INVALID_SIZE)
  // otherwise); unset: default_load_timeout(image_bytes).
  std::optional<std::chrono::milliseconds> timeout;
};

struct LoadResult {
  Checksum checksum;               // the device checksum of the image
  bool compared = false;           // whether it was compared (host hash or `expected`)
  std::uint64_t bytes_copied = 0;  // sum of the copies' bytes
  double seconds = 0;              // from the call to the verified image
};

// How far the current load is: bytes read and queued for copying, of the total to copy. Both 0
// before the first load; after a load, what it reached.
struct LoadProgress {
  std::uint64_t done = 0;
  std::uint64_t total = 0;
};

class WeightsLoader {
 public:
  // Allocates the pinned staging memory and the readers' streams and events on `device`. Throws
  // Error(VG_ERR_INVALID_SIZE) for less than 1 MiB per staging slot or over 64 readers, CudaError
  // (status VG_ERR_OUT_OF_MEMORY when the host cannot pin the memory).
  WeightsLoader(int device, const LoaderOptions& options);
  ~WeightsLoader() noexcept;
  WeightsLoader(const WeightsLoader&) = delete;
  WeightsLoader& operator=(const WeightsLoader&) = delete;

  int device() const noexcept;
  unsigned readers() const noexcept;
  std::size_t chunk_bytes() const noexcept;    // one staging slot
  std::size_t staging_bytes() const noexcept;  // all slots: 2 * readers * chunk_bytes
  // Readable from any thread while a load runs (for a progress bar).
  LoadProgress progress() const noexcept;
  // True when no load runs and none left work running on the GPU (see load()); never waits.
  // Throws CudaError when the streams cannot be queried (a broken context).
  bool idle();

  // Fills the image as described above and returns once it is verified (or has failed), never
  // later than the request's timeout (polling the GPU, never blocked in CUDA). One load at a time
  // per loader: concurrent calls wait, within their own timeouts. On any failure the image holds
  // undefined bytes. Throws Error: VG_ERR_NULL_ARGUMENT, VG_ERR_INVALID_SIZE (image 0 bytes, a
  // timeout under 1 ms), VG_ERR_OUT_OF_RANGE (a copy outside its file or the image),
  // VG_ERR_INVALID_ENUM (a file index out of range), VG_ERR_IO (open/read failed),
  // VG_ERR_FILE_CHANGED, VG_ERR_WEIGHTS_CORRUPTED, VG_ERR_TIMEOUT (the timeout passed: the GPU
  // busy or hung, or the files read too slowly); CudaError.
  //
  // When it returns, nothing of the load runs on the GPU any more, unless idle() says otherwise,
  // which only a failure with VG_ERR_TIMEOUT or a CudaError can leave: the load's zeroing, copies
  // and checksum may then still be queued or running, writing the image and reading the staging.
  // For that case: the legacy default stream of the device waits for that work, so an image of
  // kind Pool may be freed at once (its block is handed out again only after the work) and work
  // queued later on that stream, or on a blocking stream, runs after it; an image of another
  // kind must stay allocated until idle() (cudaFree promises no order with the work); the next
  // load waits for the work before it touches the staging; the destructor does not wait for it,
  // and leaves the staging, streams and events allocated to the end of the process instead.
  LoadResult load(const LoadRequest& request);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace vramguard
