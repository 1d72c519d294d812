/*
 * Fault injection for tests only: the library vramguard_faults, never part of the product. Plain
 * C ABI, so that GoogleTest suites and Rust tests (#[link(name = "vramguard_faults", kind =
 * "static")]) call the same code. Each function makes `device` current on the calling thread
 * (cudaSetDevice) and leaves it so.
 */
#ifndef VRAMGUARD_TEST_FAULTS_H
#define VRAMGUARD_TEST_FAULTS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Launches, on the legacy default stream of `device`, one thread that writes to address 0x10,
 * which no allocation can have, then synchronises. Returns the cudaError_t as an int: normally
 * cudaErrorIllegalAddress (700), a sticky error. The context of `device` is then lost for the
 * rest of the process: run it in a process of its own. */
int vg_test_fault_out_of_bounds(int device);

/* Launches asynchronously, on the legacy default stream of `device`, a kernel whose grid fills
 * every SM at full occupancy (as many 1024-thread blocks as fit on an SM, each also claiming its
 * share of the SM's shared memory, times the SM count), so that no other kernel can be scheduled
 * until it ends; each block spins on %globaltimer for `milliseconds`. Returns the launch's
 * cudaError_t as an int (0: launched). */
int vg_test_spin_all_sms(int device, unsigned milliseconds);

#ifdef __cplusplus
}
#endif

#endif /* VRAMGUARD_TEST_FAULTS_H */
