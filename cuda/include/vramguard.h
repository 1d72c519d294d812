/*
 * vramguard C ABI.
 *
 * Conventions: every function but vg_last_error and vg_status_name returns a vg_status;
 * out-parameters come last; no function throws or unwinds. After a failing call, vg_last_error()
 * returns this thread's message for it. Enumerations travel as int32_t so that an out-of-range
 * value is representable and rejected with VG_ERR_INVALID_ENUM rather than being undefined
 * behaviour. No CUDA or C++ types appear here.
 *
 * Statuses: each function's comment names what it returns besides VG_OK. Any function returning a
 * vg_status may also return VG_ERR_INTERNAL (host memory exhausted inside vramguard, or a bug);
 * the lists leave it out. A failed CUDA call is reported by what it means: no driver or no GPU ->
 * VG_ERR_NO_DEVICE, an ordinal the driver does not know -> VG_ERR_INVALID_DEVICE, out of memory ->
 * VG_ERR_OUT_OF_MEMORY, an error that corrupts the context -> VG_ERR_CUDA_STICKY, any other ->
 * VG_ERR_CUDA. A function whose comment says it touches no device makes no CUDA call.
 *
 * CUDA contexts (R4): every function leaves the calling thread's current CUDA context as it found
 * it, none included; work for a tracker's device runs in that device's primary context for the
 * length of the call. vg_set_device alone changes it: that is what it is for.
 */
#ifndef VRAMGUARD_H
#define VRAMGUARD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vg_status {
  VG_OK = 0,
  VG_ERR_NULL_ARGUMENT = 1,        /* a handle, out-parameter or pointer argument was NULL */
  VG_ERR_INVALID_SIZE = 2,         /* zero bytes, over VG_MAX_ALLOCATION_BYTES, or wrapping */
  VG_ERR_INVALID_ENUM = 3,         /* purpose, kind or mask value out of range */
  VG_ERR_DESCRIPTION_TOO_LONG = 4, /* over VG_MAX_DESCRIPTION_BYTES */
  VG_ERR_UNKNOWN_POINTER = 5,      /* not tracked by this tracker (unknown, or already freed) */
  VG_ERR_ALREADY_TRACKED = 6,      /* the pointer is already recorded */
  VG_ERR_OWNERSHIP = 7,        /* vg_free on a recorded pointer, or vg_deallocate on an owned one */
  VG_ERR_BUFFER_TOO_SMALL = 8, /* caller buffer too small: *needed says how large */
  VG_ERR_OUT_OF_RANGE = 9,     /* a copy reaches past the end of its allocation */
  VG_ERR_INVALID_DEVICE = 10,  /* device ordinal out of range */
  VG_ERR_NO_DEVICE = 11,       /* no CUDA driver or no GPU */
  VG_ERR_OUT_OF_MEMORY = 12,   /* the device (or host, for pinned memory) is out of memory */
  VG_ERR_CUDA = 13,            /* any other CUDA runtime error; vg_last_error names it */
  VG_ERR_INTERNAL = 14,        /* an unexpected failure inside vramguard (a bug) */
  VG_ERR_TIMEOUT = 15,         /* the GPU did not finish the work before the deadline (busy or
                                  hung); nothing was waited for past it */
  VG_ERR_CUDA_STICKY = 16,     /* a CUDA error that corrupts the context (an illegal address, a
                                  kernel exception, an uncorrectable ECC error, ...): every later
                                  CUDA call fails too; the process must be restarted (R3) */
  VG_ERR_IO = 17,              /* a file could not be opened or read (the errno is named) */
  VG_ERR_FILE_CHANGED = 18,    /* a weights file is not the one validated: its size, modification
                                  time or inode differ, or it ended early while being read */
  VG_ERR_WEIGHTS_CORRUPTED = 19, /* the device checksum of loaded weights differs from the bytes
                                    read (or from the checksum expected): they did not arrive
                                    intact */
  VG_ERR_NOT_READABLE = 20 /* the GPU cannot read the memory: pageable host memory, another GPU's
                              memory, pinned host memory not mapped into the device, or a freed or
                              wild address */
} vg_status;

typedef enum vg_purpose {
  VG_PURPOSE_MODEL_WEIGHTS = 0,
  VG_PURPOSE_KV_CACHE = 1,
  VG_PURPOSE_INTERMEDIATE_BUFFERS = 2,
  VG_PURPOSE_UNKNOWN = 3
} vg_purpose;
#define VG_PURPOSE_COUNT 4
/* Residency purpose masks: bit (1 << purpose). */
#define VG_PURPOSE_MASK_ALL 0xFu

typedef enum vg_kind {
  VG_KIND_DEVICE = 0,      /* cudaMalloc */
  VG_KIND_POOL = 1,        /* cudaMallocAsync on the tracker's CUDA memory pool */
  VG_KIND_MANAGED = 2,     /* cudaMallocManaged: a RAM-fallback kind, only when asked for */
  VG_KIND_PINNED_HOST = 3, /* cudaMallocHost: a RAM-fallback kind, only when asked for */
  VG_KIND_ADOPTED = 4      /* made by another allocator, recorded with vg_adopt, never freed here */
} vg_kind;
#define VG_KIND_COUNT 5

/* What cudaPointerGetAttributes says a pointer is. */
typedef enum vg_memory_type {
  VG_MEMORY_UNREGISTERED = 0,
  VG_MEMORY_HOST = 1,
  VG_MEMORY_DEVICE = 2,
  VG_MEMORY_MANAGED = 3
} vg_memory_type;

/* Why a tracked allocation is not resident. */
typedef enum vg_violation_reason {
  VG_VIOLATION_NOT_DEVICE_MEMORY = 0, /* type is not cudaMemoryTypeDevice */
  VG_VIOLATION_HOST_POINTER = 1,      /* device type but with a host mapping */
  VG_VIOLATION_WRONG_DEVICE = 2,      /* device memory of another GPU */
  VG_VIOLATION_QUERY_FAILED = 3       /* cudaPointerGetAttributes failed for this pointer */
} vg_violation_reason;

#define VG_MAX_DESCRIPTION_BYTES 255
#define VG_MAX_ALLOCATION_BYTES (1ull << 48) /* 256 TiB: beyond any device, far below overflow */
#define VG_MAX_NAME_BYTES 255

typedef struct vg_tracker vg_tracker;

/* One live allocation, copied out of the tracker. */
typedef struct vg_allocation {
  uint64_t id; /* unique within the tracker, never reused */
  uint64_t address;
  uint64_t bytes;
  int32_t purpose; /* vg_purpose */
  int32_t kind;    /* vg_kind */
  int32_t device;
  int32_t owned; /* 1: allocated by vramguard (free with vg_free); 0: recorded/adopted */
  uint64_t recorded_at_unix_ns;
  char description[VG_MAX_DESCRIPTION_BYTES + 1];
} vg_allocation;

/* Counters, read without walking the allocation map. */
typedef struct vg_usage {
  uint64_t total_bytes;
  uint64_t allocation_count;
  uint64_t purpose_bytes[VG_PURPOSE_COUNT];
  uint64_t purpose_count[VG_PURPOSE_COUNT];
  uint64_t peak_total_bytes;
  uint64_t peak_purpose_bytes[VG_PURPOSE_COUNT];
  uint64_t lifetime_allocations;  /* records ever made */
  uint64_t unknown_deallocations; /* deallocations of pointers that were not tracked (T2) */
} vg_usage;

typedef struct vg_device_info {
  int32_t ordinal;
  int32_t compute_major;
  int32_t compute_minor;
  int32_t integrated;     /* shares physical memory with the host */
  int32_t managed_memory; /* supports cudaMallocManaged */
  int32_t concurrent_managed_access;
  int32_t pageable_memory_access; /* can access pageable host memory (HMM / ATS): unified */
  int32_t memory_pools;           /* supports cudaMallocAsync pools */
  uint64_t total_bytes;
  uint64_t free_bytes;
  char name[VG_MAX_NAME_BYTES + 1];
  /* cudaDeviceGetPCIBusId, e.g. "0000:1B:00.0", NUL-terminated: NVML and nvidia-smi number GPUs
     differently from CUDA (CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER), so GPUs are matched by it. */
  char pci_bus_id[32];
} vg_device_info;

typedef struct vg_pointer_check {
  int32_t resident;    /* 1 when device memory of the expected device, no host mapping */
  int32_t memory_type; /* vg_memory_type */
  int32_t device;      /* as reported (-2 for unregistered host memory) */
  int32_t has_host_pointer;
  int32_t cuda_error; /* 0 unless the query itself failed */
} vg_pointer_check;

typedef struct vg_violation {
  uint64_t id;
  uint64_t address;
  uint64_t bytes;
  int32_t purpose;
  int32_t kind;
  int32_t reason;      /* vg_violation_reason */
  int32_t memory_type; /* observed vg_memory_type */
  int32_t observed_device;
  int32_t cuda_error;
  char description[VG_MAX_DESCRIPTION_BYTES + 1];
} vg_violation;

typedef struct vg_residency {
  int32_t resident; /* 1 when no violation was found */
  int32_t device;
  uint64_t checked;         /* allocations whose purpose was in the mask, queried by this sweep */
  uint64_t violation_count; /* may exceed the capacity passed in: only that many were copied */
  uint64_t tracked_bytes;
  uint64_t allocation_count;
  uint64_t device_used_bytes; /* total - free from cudaMemGetInfo */
  uint64_t device_total_bytes;
  uint64_t not_queried; /* vramguard's own device and pool memory of the mask left out by the
                           sample (vg_verify_sampled; 0 from vg_verify) */
} vg_residency;

/* Errors and names ------------------------------------------------------------------------- */
/* The message of the calling thread's last failing call ("" before any); never NULL. A call that
 * succeeds leaves it as it was; the pointer is valid until this thread's next failing call.
 * Returns no status. */
const char* vg_last_error(void);
/* The name of a status: "VG_OK", "VG_ERR_NULL_ARGUMENT", ...; "VG_STATUS_UNKNOWN" for a value that
 * is no vg_status. Never NULL (a static string); returns no status and sets no error. */
const char* vg_status_name(int32_t status);

/* Devices ---------------------------------------------------------------------------------- */
/* The number of visible GPUs, at least 1 on VG_OK. VG_ERR_NULL_ARGUMENT (out_count NULL),
 * VG_ERR_NO_DEVICE (no driver, or it reports no GPU), VG_ERR_CUDA / VG_ERR_CUDA_STICKY (another
 * failure of cudaGetDeviceCount). */
vg_status vg_device_count(int32_t* out_count);
/* Properties and memory figures of one GPU. VG_ERR_NULL_ARGUMENT (out_info NULL),
 * VG_ERR_NO_DEVICE, VG_ERR_INVALID_DEVICE (device < 0 or >= vg_device_count), VG_ERR_CUDA /
 * VG_ERR_CUDA_STICKY (a query failed). */
vg_status vg_device_info_get(int32_t device, vg_device_info* out_info);
/* Makes device's primary context the calling thread's current one (cudaSetDevice).
 * VG_ERR_NO_DEVICE, VG_ERR_INVALID_DEVICE (device < 0 or >= vg_device_count), VG_ERR_CUDA /
 * VG_ERR_CUDA_STICKY. */
vg_status vg_set_device(int32_t device);
/* Free and total bytes of one GPU (cudaMemGetInfo). VG_ERR_NULL_ARGUMENT (out_free or out_total
 * NULL), VG_ERR_NO_DEVICE, VG_ERR_INVALID_DEVICE (device < 0 or >= vg_device_count), VG_ERR_CUDA /
 * VG_ERR_CUDA_STICKY. */
vg_status vg_memory_info(int32_t device, uint64_t* out_free, uint64_t* out_total);

/* Trackers: one per device. Creating one needs no GPU; allocating through it does. ---------- */
/* Touches no device: an ordinal with no GPU behind it is accepted, and the first call that uses
 * the device fails. VG_ERR_NULL_ARGUMENT (out_tracker NULL), VG_ERR_INVALID_DEVICE (device < 0). */
vg_status vg_tracker_create(int32_t device, vg_tracker** out_tracker);
/* Frees every allocation the tracker still owns, then the tracker. VG_ERR_NULL_ARGUMENT (tracker
 * NULL); otherwise VG_OK: a free that fails is not reported (that memory goes with the context). */
vg_status vg_tracker_destroy(vg_tracker* tracker);
/* The device ordinal the tracker was created for. VG_ERR_NULL_ARGUMENT (tracker or out_device
 * NULL). */
vg_status vg_tracker_device(const vg_tracker* tracker, int32_t* out_device);

/* Bookkeeping without allocation: these touch no device. ------------------------------------ */
/* Records memory the caller allocated itself. description and out_id may be NULL.
 * VG_ERR_NULL_ARGUMENT (tracker or ptr NULL), VG_ERR_INVALID_ENUM (purpose or kind out of range),
 * VG_ERR_INVALID_SIZE (bytes 0, over VG_MAX_ALLOCATION_BYTES, ptr + bytes wrapping around, or a
 * tracked total that would overflow), VG_ERR_DESCRIPTION_TOO_LONG, VG_ERR_ALREADY_TRACKED (ptr is
 * recorded already). */
vg_status vg_record(vg_tracker* tracker, const void* ptr, uint64_t bytes, int32_t purpose,
                    int32_t kind, const char* description, uint64_t* out_id);
/* Records a pointer made by another allocator (a framework's tensor) as kind VG_KIND_ADOPTED.
 * description and out_id may be NULL. The statuses of vg_record: VG_ERR_NULL_ARGUMENT,
 * VG_ERR_INVALID_ENUM (purpose), VG_ERR_INVALID_SIZE, VG_ERR_DESCRIPTION_TOO_LONG,
 * VG_ERR_ALREADY_TRACKED. */
vg_status vg_adopt(vg_tracker* tracker, const void* ptr, uint64_t bytes, int32_t purpose,
                   const char* description, uint64_t* out_id);
/* Forgets the record of a recorded or adopted pointer; frees nothing. VG_ERR_NULL_ARGUMENT
 * (tracker or ptr NULL); an unknown pointer -> VG_ERR_UNKNOWN_POINTER, changing nothing but the
 * count of unknown deallocations; vramguard's own allocations -> VG_ERR_OWNERSHIP (free them with
 * vg_free). */
vg_status vg_forget(vg_tracker* tracker, const void* ptr);
/* The old name of vg_forget, kept for existing callers: the same statuses. */
vg_status vg_deallocate(vg_tracker* tracker, const void* ptr);

/* Reads: these touch no device. -------------------------------------------------------------- */
/* The tracker's counters. VG_ERR_NULL_ARGUMENT (tracker or out_usage NULL). */
vg_status vg_usage_get(const vg_tracker* tracker, vg_usage* out_usage);
/* Bytes tracked, all purposes. VG_ERR_NULL_ARGUMENT (tracker or out_bytes NULL). */
vg_status vg_total_bytes(const vg_tracker* tracker, uint64_t* out_bytes);
/* Bytes tracked for one purpose. VG_ERR_NULL_ARGUMENT (tracker or out_bytes NULL),
 * VG_ERR_INVALID_ENUM (purpose out of range). */
vg_status vg_purpose_bytes(const vg_tracker* tracker, int32_t purpose, uint64_t* out_bytes);
/* Live allocations tracked. VG_ERR_NULL_ARGUMENT (tracker or out_count NULL). */
vg_status vg_allocation_count(const vg_tracker* tracker, uint64_t* out_count);
/* Copies the live allocations, oldest first. With too small a capacity: VG_ERR_BUFFER_TOO_SMALL,
 * nothing copied, *out_count = the number needed. out may be NULL when capacity is 0.
 * VG_ERR_NULL_ARGUMENT (tracker or out_count NULL, or out NULL with allocations to copy). */
/* The live allocations whose purpose bit is in purpose_mask, oldest first, as vg_snapshot copies
 * them; shards are read one at a time, so while others record the list is a recent view, not one
 * consistent with vg_usage_get. VG_ERR_INVALID_ENUM (purpose_mask 0 or outside
 * VG_PURPOSE_MASK_ALL) and the statuses of vg_snapshot. */
vg_status vg_snapshot_of(const vg_tracker* tracker, uint32_t purpose_mask, vg_allocation* out,
                         uint64_t capacity, uint64_t* out_count);
vg_status vg_snapshot(const vg_tracker* tracker, vg_allocation* out, uint64_t capacity,
                      uint64_t* out_count);
/* Copies the human-readable usage report, NUL-terminated. *out_needed counts the NUL.
 * VG_ERR_NULL_ARGUMENT (tracker or out_needed NULL, or out NULL with a large enough capacity),
 * VG_ERR_BUFFER_TOO_SMALL (nothing copied; *out_needed says how large). */
vg_status vg_report(const vg_tracker* tracker, char* out, uint64_t capacity, uint64_t* out_needed);

/* Allocation --------------------------------------------------------------------------------- */
/* Allocates `bytes` of memory of `kind` on the tracker's device and records it as owned (free it
 * with vg_free). description may be NULL. VG_ERR_NULL_ARGUMENT (tracker or out_ptr NULL); before
 * any device is touched, what vg_check_allocation answers (VG_ERR_INVALID_ENUM,
 * VG_ERR_INVALID_SIZE, VG_ERR_DESCRIPTION_TOO_LONG); then VG_ERR_OUT_OF_MEMORY, VG_ERR_NO_DEVICE,
 * VG_ERR_INVALID_DEVICE (the tracker's device does not exist), VG_ERR_ALREADY_TRACKED (the new
 * memory's address was recorded already by vg_record or vg_adopt: it is freed again), VG_ERR_CUDA
 * / VG_ERR_CUDA_STICKY. */
vg_status vg_alloc(vg_tracker* tracker, uint64_t bytes, int32_t purpose, int32_t kind,
                   const char* description, void** out_ptr);
/* Answers what vg_alloc would answer for these arguments, without a tracker and without touching
 * any device: VG_OK, or the status of the first argument vg_alloc would refuse (purpose or kind
 * out of range -> VG_ERR_INVALID_ENUM, zero bytes or over VG_MAX_ALLOCATION_BYTES ->
 * VG_ERR_INVALID_SIZE, a description over VG_MAX_DESCRIPTION_BYTES ->
 * VG_ERR_DESCRIPTION_TOO_LONG, kind VG_KIND_ADOPTED -> VG_ERR_INVALID_ENUM). For callers that
 * must refuse bad arguments before something of their own (a budget charge, a whole workload). */
vg_status vg_check_allocation(uint64_t bytes, int32_t purpose, int32_t kind,
                              const char* description);
/* Frees and un-records an allocation made by vg_alloc. A second free is VG_ERR_UNKNOWN_POINTER.
 * A copy or checksum of the same allocation running on another thread is waited for first, so
 * that it never lands in a later allocation at the same address.
 *
 * GPU work still using the memory: VG_KIND_DEVICE and VG_KIND_MANAGED are freed with cudaFree,
 * which the runtime says "may perform implicit synchronization" (it does not promise to wait for
 * kernels using the memory): complete or synchronise such work first. VG_KIND_POOL is freed with
 * cudaFreeAsync on the legacy default stream of the tracker's device: the memory may be handed out
 * again as soon as what was queued on that stream before the free is done. The legacy default
 * stream first waits for the earlier work of every blocking stream of the context: streams made by
 * cudaStreamCreate, and the per-thread default streams (CUDA's "stream synchronization behavior": a
 * per-thread default stream is not a non-blocking stream and synchronises with the legacy one). So
 * a kernel on such a stream that still reads or writes the buffer finishes before the memory is
 * reused, also by vramguard: vg_copy_to_device copies on that stream, and vg_load_weights waits for
 * it before it writes. Work on a non-blocking stream (cudaStreamNonBlocking), in another context or
 * process is not waited for: the caller synchronises it before freeing memory it uses
 * (cudaStreamSynchronize, or cudaStreamWaitEvent of the legacy stream on an event recorded after
 * it). VG_KIND_PINNED_HOST is freed with cudaFreeHost.
 *
 * VG_ERR_NULL_ARGUMENT (tracker or ptr NULL), VG_ERR_UNKNOWN_POINTER (not tracked: never
 * allocated, or freed already), VG_ERR_OWNERSHIP (recorded or adopted, not allocated by
 * vramguard: vg_forget it), VG_ERR_CUDA / VG_ERR_CUDA_STICKY / VG_ERR_NO_DEVICE (the CUDA free
 * failed; the record is gone all the same). */
vg_status vg_free(vg_tracker* tracker, void* ptr);
/* Copies between host memory and a vg_alloc allocation, at a byte offset inside it. Returns once
 * the copy is complete in its destination (the legacy default stream is synchronised behind it).
 * vg_free of the allocation on another thread waits for the copy. The device side (dst of
 * vg_copy_to_device, src of vg_copy_to_host) is the address the allocation was tracked at; bytes 0
 * copies nothing. VG_ERR_NULL_ARGUMENT (tracker, dst or src NULL), VG_ERR_UNKNOWN_POINTER (the
 * device side is not tracked by this tracker), VG_ERR_OUT_OF_RANGE (offset + bytes past the
 * allocation's end), VG_ERR_NO_DEVICE, VG_ERR_CUDA / VG_ERR_CUDA_STICKY (the copy failed). */
vg_status vg_copy_to_device(vg_tracker* tracker, void* dst, uint64_t offset, const void* src,
                            uint64_t bytes);
vg_status vg_copy_to_host(vg_tracker* tracker, void* dst, const void* src, uint64_t offset,
                          uint64_t bytes);

/* Residency ---------------------------------------------------------------------------------- */
/* Classifies one pointer against the expected device. ptr may be any address (NULL: not
 * resident, VG_MEMORY_UNREGISTERED); a pointer query that fails for this pointer is no error: it
 * is out_check->cuda_error. VG_ERR_NULL_ARGUMENT (out_check NULL), VG_ERR_NO_DEVICE,
 * VG_ERR_INVALID_DEVICE (device < 0 or >= vg_device_count), VG_ERR_CUDA_STICKY (the context is
 * corrupt), VG_ERR_CUDA. */
vg_status vg_check_pointer(int32_t device, const void* ptr, vg_pointer_check* out_check);
/* Verifies every allocation whose purpose bit is in purpose_mask; copies up to capacity
 * violations (violations may be NULL when capacity is 0). A violation is no error: VG_OK with
 * out_residency->resident 0. VG_ERR_NULL_ARGUMENT (tracker or out_residency NULL, or violations
 * NULL with a capacity), VG_ERR_INVALID_ENUM (purpose_mask 0 or with bits outside
 * VG_PURPOSE_MASK_ALL), VG_ERR_NO_DEVICE, VG_ERR_INVALID_DEVICE (the tracker's device does not
 * exist), VG_ERR_CUDA / VG_ERR_CUDA_STICKY. */
vg_status vg_verify(vg_tracker* tracker, uint32_t purpose_mask, vg_residency* out_residency,
                    vg_violation* violations, uint64_t capacity);
/* For every own allocation in a full sweep. */
#define VG_SWEEP_ALL_OWN UINT64_MAX
/* vg_verify with fewer pointer queries: recorded and adopted pointers, and vramguard's own
 * managed and pinned host memory, are queried as vg_verify queries them; of vramguard's own
 * device and pool memory (device memory by construction, classified when allocated) only about
 * own_sample of them, those whose id is `rotation` modulo ceil(allocations / own_sample), so that
 * consecutive rotations cover them all. own_sample VG_SWEEP_ALL_OWN is vg_verify; 0 queries none
 * of them. out_residency->not_queried counts those left out. The statuses of vg_verify. */
vg_status vg_verify_sampled(vg_tracker* tracker, uint32_t purpose_mask, uint64_t own_sample,
                            uint64_t rotation, vg_residency* out_residency,
                            vg_violation* violations, uint64_t capacity);
/* What the tracker's memory pool (the one its VG_KIND_POOL allocations come from, made on the
 * first of them) holds from the driver, and how much of that is allocated now: the difference is
 * the pool's cache of freed blocks, device memory the process holds that no allocation tracks.
 * Both 0 before the pool exists (then no device is touched). VG_ERR_NULL_ARGUMENT (any argument
 * NULL), the device statuses of vg_verify. */
vg_status vg_pool_usage(vg_tracker* tracker, uint64_t* out_reserved_bytes,
                        uint64_t* out_used_bytes);
/* Runs a verification of every purpose and copies the human-readable residency report,
 * NUL-terminated; *out_needed counts the NUL. VG_ERR_NULL_ARGUMENT (tracker or out_needed NULL,
 * or out NULL with a large enough capacity), VG_ERR_BUFFER_TOO_SMALL (nothing copied;
 * *out_needed says how large), and the device statuses of vg_verify: VG_ERR_NO_DEVICE,
 * VG_ERR_INVALID_DEVICE, VG_ERR_CUDA / VG_ERR_CUDA_STICKY. */
vg_status vg_residency_report(vg_tracker* tracker, char* out, uint64_t capacity,
                              uint64_t* out_needed);

/* Integrity checksums (I1) ------------------------------------------------------------------- */
/* A 128-bit non-cryptographic checksum: one pass over the bytes, any single changed byte always
 * changes it, and the device and host versions agree bit for bit (definition:
 * cuda/src/checksum_hash.hpp). */
typedef struct vg_checksum {
  uint64_t lo;
  uint64_t hi;
} vg_checksum;
/* How long vg_checksum_device waits for the GPU: 30 s. */
#define VG_CHECKSUM_DEFAULT_TIMEOUT_MS 30000ull
/* The checksum of [ptr + offset, ptr + offset + bytes), computed on the tracker's device by a
 * CUDA kernel at memory bandwidth; waits for it, but not past timeout_ms milliseconds from the
 * call: then VG_ERR_TIMEOUT (the GPU is busy or hung), and the kernel is left to finish, or not,
 * without anyone waiting for it or reusing what it writes; it may still read the range, so free
 * it only once the GPU is known to have finished (a later checksum succeeded, or the device was
 * synchronised). timeout_ms 0 -> VG_ERR_INVALID_SIZE.
 *
 * ptr is an allocation tracked by this tracker (device, pool, managed or pinned host memory), the
 * range must lie inside it: tracker, ptr or out NULL -> VG_ERR_NULL_ARGUMENT, unknown pointer ->
 * VG_ERR_UNKNOWN_POINTER, range past its end -> VG_ERR_OUT_OF_RANGE, bytes 0 ->
 * VG_ERR_INVALID_SIZE. Memory the GPU cannot read (a recorded pageable or wild address, memory of
 * another GPU) -> VG_ERR_CUDA, before any kernel runs. No GPU -> VG_ERR_NO_DEVICE, the tracker's
 * device does not exist -> VG_ERR_INVALID_DEVICE, a kernel or copy that corrupts the context ->
 * VG_ERR_CUDA_STICKY. vg_free of the allocation on another thread waits until the checksum
 * returns.
 *
 * The kernel runs on vramguard's own non-blocking stream for the device: it does not queue behind
 * the legacy default stream, and it does not wait for it or for any other stream either. What the
 * caller wrote into the range must be complete before the call: vg_copy_to_device returns
 * complete, as does a cudaMemcpy into device memory from pinned memory or back to the host; a
 * kernel, an asynchronous copy, or a cudaMemcpy from pageable memory or between device addresses
 * (which can return before the data lands) must be synchronised first. */
vg_status vg_checksum_device_within(vg_tracker* tracker, const void* ptr, uint64_t offset,
                                    uint64_t bytes, uint64_t timeout_ms, vg_checksum* out);
/* vg_checksum_device_within with VG_CHECKSUM_DEFAULT_TIMEOUT_MS: the same statuses. */
vg_status vg_checksum_device(vg_tracker* tracker, const void* ptr, uint64_t offset, uint64_t bytes,
                             vg_checksum* out);
/* The same checksum of `bytes` host bytes at ptr, computed on the CPU (ptr may be NULL when bytes
 * is 0); touches no device. VG_ERR_NULL_ARGUMENT (out NULL, or ptr NULL with bytes > 0),
 * VG_ERR_INVALID_SIZE (ptr + bytes wraps around the address space). */
vg_status vg_checksum_host(const void* ptr, uint64_t bytes, vg_checksum* out);

/* The read witness ----------------------------------------------------------------------- */
/* Where bytes are, judged by how fast the GPU reads them: terabytes per second from its own
 * memory, about 50 GB/s from host memory over PCIe, whatever the pointer's attributes say
 * (vramguard/read_witness.hpp). A witness owns a stream at the device's greatest priority and a
 * control buffer of device memory; a reading is timed by the GPU's global timer from its first
 * block's start to its last block's end, so that the time it waits for SMs held by other kernels
 * is not counted. */
/* The smallest range whose reading the witness judges (below it, host memory can read faster than
 * PCIe delivers it). */
#define VG_WITNESS_SMALLEST_JUDGED_BYTES (1ull << 20)
/* The control buffer's size that vramguard uses (larger than the L2 of the GPUs it targets). */
#define VG_WITNESS_CONTROL_BYTES (64ull << 20)
typedef struct vg_read_witness vg_read_witness;
typedef struct vg_read_bandwidth {
  uint64_t range_bytes; /* the 16-byte-aligned part of the range that was read */
  uint64_t bytes_read;  /* range_bytes times the passes made */
  double seconds;       /* from the first block's start to the last block's end (GPU timer) */
  double event_seconds; /* between CUDA events around the launch: seconds plus any wait for SMs */
} vg_read_bandwidth;
/* The control buffer, a target, the control buffer again: one window on the witness's stream. */
typedef struct vg_bracketed_reading {
  vg_read_bandwidth control_before;
  vg_read_bandwidth target;
  vg_read_bandwidth control_after;
} vg_bracketed_reading;
typedef struct vg_witness_calibration {
  int32_t device;
  uint64_t buffer_bytes;
  vg_read_bandwidth device_memory; /* the best of three reads of the control buffer */
  vg_read_bandwidth host_memory;   /* the best of three reads of mapped pinned host memory */
} vg_witness_calibration;
/* Makes a witness on `device`: control_bytes of device memory (cudaMalloc; vramguard's own,
 * untracked) and a stream. control_bytes under 1 MiB or over VG_MAX_ALLOCATION_BYTES ->
 * VG_ERR_INVALID_SIZE; the device statuses of vg_alloc. */
vg_status vg_read_witness_create(int32_t device, uint64_t control_bytes, vg_read_witness** out);
/* Frees the witness (NULL is a no-op). Memory a reading past its deadline may still use is left
 * to the context's end instead. */
vg_status vg_read_witness_destroy(vg_read_witness* witness);
/* Reads the aligned 16-byte words of [ptr + offset, ptr + offset + bytes) of an allocation tracked
 * by `tracker` (on the witness's device) as many passes as make at least min_bytes_read bytes (at
 * most 2^20 passes), with loads that re-fetch host memory on every pass, and times the reading.
 * ptr, the range and the pinning against vg_free are as for vg_checksum_device_within;
 * min_bytes_read 0 or timeout_ms 0 -> VG_ERR_INVALID_SIZE; a range holding no aligned 16-byte word
 * -> VG_ERR_INVALID_SIZE; memory the GPU cannot read -> VG_ERR_NOT_READABLE; a tracker of another
 * device -> VG_ERR_INVALID_DEVICE; past the deadline -> VG_ERR_TIMEOUT. */
vg_status vg_read_witness_measure(vg_read_witness* witness, vg_tracker* tracker, const void* ptr,
                                  uint64_t offset, uint64_t bytes, uint64_t min_bytes_read,
                                  uint64_t timeout_ms, vg_read_bandwidth* out);
/* As vg_read_witness_measure, between two readings of the control buffer in one window. */
vg_status vg_read_witness_measure_bracketed(vg_read_witness* witness, vg_tracker* tracker,
                                            const void* ptr, uint64_t offset, uint64_t bytes,
                                            uint64_t min_bytes_read, uint64_t timeout_ms,
                                            vg_bracketed_reading* out);
/* Calibrates: the control buffer and control_bytes of mapped pinned host memory (allocated for the
 * call), the best of three readings each. The statuses of vg_read_witness_measure. */
vg_status vg_read_witness_calibrate(vg_read_witness* witness, uint64_t min_bytes_read,
                                    uint64_t timeout_ms, vg_witness_calibration* out);

/* Loading weights (W1, I1) ------------------------------------------------------------------ */
/* A loader fills device memory with bytes read from files through pinned staging memory it
 * allocates once (cuda/include/vramguard/weights_loader.hpp describes the pipeline). */
typedef struct vg_loader vg_loader;

typedef struct vg_loader_options {
  uint64_t staging_bytes; /* pinned host memory, all readers together; 0: 128 MiB */
  uint32_t readers;       /* reader threads; 0: one per hardware thread, at most 16 */
} vg_loader_options;

typedef struct vg_loader_info {
  int32_t device;
  uint32_t readers;
  uint64_t chunk_bytes;   /* one staging slot; each reader has two */
  uint64_t staging_bytes; /* pinned host bytes the loader holds */
} vg_loader_info;

/* A file as the caller validated it; any difference before or during the load is
 * VG_ERR_FILE_CHANGED. */
typedef struct vg_weights_file {
  const char* path; /* NUL-terminated */
  uint64_t size;
  int64_t mtime_ns; /* modification time, nanoseconds since the epoch */
  uint64_t inode;
  uint64_t dev;
} vg_weights_file;

/* `bytes` bytes at `file_offset` of files[file] go to `device_offset` of the image (a multiple
 * of 16). Device ranges must not overlap; a copy of 0 bytes is ignored. */
typedef struct vg_weights_copy {
  uint32_t file;
  uint64_t file_offset;
  uint64_t bytes;
  uint64_t device_offset;
} vg_weights_copy;

/* Load flags; any other bit is refused (VG_ERR_INVALID_ENUM). */
#define VG_LOAD_VERIFY 1u   /* hash the bytes read on the host, compare */
#define VG_LOAD_EXPECTED 2u /* compare with `expected` instead of hashing */

/* The deadline of vg_load_weights: 60 s plus 10 s per GiB of image, about a tenth of a GB/s, far
 * longer than any load on a working GPU takes (the slowest measured, one verifying reader,
 * 0.85 GB/s). */
#define VG_LOAD_TIMEOUT_FLOOR_MS 60000ull
#define VG_LOAD_TIMEOUT_MS_PER_GIB 10000ull

typedef struct vg_load_result {
  vg_checksum checksum;  /* the device checksum of the image: its integrity reference */
  int32_t compared;      /* 1 when it was compared with the host hash or `expected` */
  uint64_t bytes_copied; /* the copies' bytes, all files */
  double seconds;        /* from the call to the verified image */
} vg_load_result;

/* Allocates the staging memory (pinned) and the readers' streams on `device`. options may be
 * NULL (the defaults). out_loader NULL -> VG_ERR_NULL_ARGUMENT (otherwise *out_loader is NULL on
 * failure); under 1 MiB per staging slot or over 64 readers -> VG_ERR_INVALID_SIZE, before any
 * device is touched; the host cannot pin the memory -> VG_ERR_OUT_OF_MEMORY; VG_ERR_NO_DEVICE,
 * VG_ERR_INVALID_DEVICE (device does not exist), VG_ERR_CUDA / VG_ERR_CUDA_STICKY (a stream or
 * event cannot be made). */
vg_status vg_loader_create(int32_t device, const vg_loader_options* options,
                           vg_loader** out_loader);
/* Frees the loader's staging memory and streams. loader may be NULL (nothing to do). Always VG_OK:
 * a release that fails is not reported (that memory goes with the context or the process). Never
 * waits for work a failed load left running (see vg_load_weights): while some runs, the staging,
 * streams and events stay allocated, to the end of the process. */
vg_status vg_loader_destroy(vg_loader* loader);
/* The loader's device, readers and staging sizes. VG_ERR_NULL_ARGUMENT (loader or out_info NULL).
 */
vg_status vg_loader_info_get(const vg_loader* loader, vg_loader_info* out_info);
/* How far the running load is, from any thread: bytes read and queued for copying, of the bytes
 * it copies in all (both 0 before the first load; after a load, what it reached).
 * VG_ERR_NULL_ARGUMENT (loader, out_done or out_total NULL). */
vg_status vg_loader_progress(const vg_loader* loader, uint64_t* out_done, uint64_t* out_total);
/* Whether the loader is idle: *out_idle 1 when no load runs and no failed load left work running
 * on the GPU (see vg_load_weights), 0 otherwise. Never waits. VG_ERR_NULL_ARGUMENT (loader or
 * out_idle NULL), VG_ERR_CUDA / VG_ERR_CUDA_STICKY (the loader's streams cannot be queried). */
vg_status vg_loader_idle(vg_loader* loader, int32_t* out_idle);
/* Zeroes the first image_bytes bytes of dst, copies every copy into place, and checks the device
 * checksum of those bytes against the host hash of the bytes read (flags VG_LOAD_VERIFY) or
 * against *expected (VG_LOAD_EXPECTED; expected may be NULL otherwise); flags 0 compares nothing.
 * dst is an allocation of `tracker` on the loader's device (VG_ERR_UNKNOWN_POINTER otherwise,
 * VG_ERR_INVALID_DEVICE for another device) holding at least image_bytes (VG_ERR_OUT_OF_RANGE);
 * vg_free of it waits for the load. One load at a time per loader: a second caller waits, within
 * its own deadline. flags and timeout_ms are judged first, before any handle (so with no loader
 * and no GPU): a bit that is neither VG_LOAD_VERIFY nor VG_LOAD_EXPECTED -> VG_ERR_INVALID_ENUM,
 * timeout_ms 0 -> VG_ERR_INVALID_SIZE.
 *
 * Deadline: the load returns within timeout_ms milliseconds of the call, whatever the GPU does
 * (it polls the GPU, never blocks in CUDA): past it, VG_ERR_TIMEOUT (the GPU busy or hung, or the
 * files read too slowly). Errors: VG_ERR_NULL_ARGUMENT
 * (loader, tracker, dst or out_result NULL; files or copies NULL with a count; a file's path NULL;
 * expected NULL with VG_LOAD_EXPECTED), VG_ERR_IO, VG_ERR_FILE_CHANGED, VG_ERR_WEIGHTS_CORRUPTED,
 * VG_ERR_OUT_OF_RANGE (a copy outside its file or the image, or overlapping another),
 * VG_ERR_INVALID_ENUM (a file index out of range, an unknown flag), VG_ERR_INVALID_SIZE
 * (image_bytes 0, timeout_ms 0), VG_ERR_TIMEOUT (the deadline passed), VG_ERR_NO_DEVICE,
 * VG_ERR_CUDA / VG_ERR_CUDA_STICKY. On failure the image's bytes are undefined.
 *
 * What still runs: when it returns, nothing of the load runs on the GPU any more, unless
 * vg_loader_idle says otherwise, which only VG_ERR_TIMEOUT or a CUDA status can leave. The load's
 * zeroing, copies and checksum may then still be queued or running, writing dst and reading the
 * loader's staging; and: the legacy default stream of the device waits for that work, so a
 * VG_KIND_POOL dst may be vg_free'd at once (the pool hands its block out again only after the
 * work) and work queued later on that stream, or on a blocking stream, runs after it; dst of
 * another kind must not be freed before vg_loader_idle says 1 (cudaFree promises no order with the
 * work); the loader's next load waits for the work before it touches the staging;
 * vg_loader_destroy does not wait for it (see there).
 *
 * Order: the load writes dst only after everything queued before the call on the legacy default
 * stream of the loader's device is done, and through it the earlier work of every blocking stream
 * (as for vg_free): a VG_KIND_POOL dst allocated just now, or a block whose previous owner's kernel
 * on such a stream still reads it, is not written under that kernel. Work on non-blocking streams
 * or in other processes is not waited for. */
vg_status vg_load_weights_within(vg_loader* loader, vg_tracker* tracker, void* dst,
                                 uint64_t image_bytes, const vg_weights_file* files,
                                 uint64_t file_count, const vg_weights_copy* copies,
                                 uint64_t copy_count, uint32_t flags, const vg_checksum* expected,
                                 uint64_t timeout_ms, vg_load_result* out_result);
/* vg_load_weights_within with a timeout of VG_LOAD_TIMEOUT_FLOOR_MS plus
 * VG_LOAD_TIMEOUT_MS_PER_GIB per GiB of image_bytes: the same statuses. */
vg_status vg_load_weights(vg_loader* loader, vg_tracker* tracker, void* dst, uint64_t image_bytes,
                          const vg_weights_file* files, uint64_t file_count,
                          const vg_weights_copy* copies, uint64_t copy_count, uint32_t flags,
                          const vg_checksum* expected, vg_load_result* out_result);

#ifdef __cplusplus
}
#endif

#endif /* VRAMGUARD_H */
