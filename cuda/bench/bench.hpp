// The benchmark's sections; each appends rows to the one table.
#pragma once

namespace bench {
void tracker_benchmarks();
void residency_benchmarks(int device);
void pool_benchmarks(int device);
void checksum_benchmarks(int device);
}  // namespace bench
