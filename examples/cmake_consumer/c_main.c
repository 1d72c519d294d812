/* A C caller of vramguard.h, built with pkg-config (scripts/cpp-package-test.sh):
 *   cc c_main.c $(pkg-config --cflags --libs vramguard)
 * Counts the GPUs; with one, allocates a small tracked buffer and verifies it is resident.
 * Exit 0 when it is, 101 without a GPU (VG_ERR_NO_DEVICE), 1 otherwise. */
#include <stdio.h>

#include "vramguard.h"

static int failed(const char* call, vg_status status) {
  fprintf(stderr, "vramguard C consumer: %s: %s: %s\n", call, vg_status_name(status),
          vg_last_error());
  return status == VG_ERR_NO_DEVICE ? 101 : 1;
}

int main(void) {
  int32_t count = 0;
  vg_status status = vg_device_count(&count);
  printf("vramguard C consumer: vg_device_count: %s\n", vg_status_name(status));
  if (status != VG_OK) return failed("vg_device_count", status);

  vg_tracker* tracker = NULL;
  status = vg_tracker_create(0, &tracker);
  if (status != VG_OK) return failed("vg_tracker_create", status);
  void* buffer = NULL;
  status =
      vg_alloc(tracker, 1u << 20, VG_PURPOSE_MODEL_WEIGHTS, VG_KIND_DEVICE, "c consumer", &buffer);
  int exit_code = 0;
  if (status != VG_OK) {
    exit_code = failed("vg_alloc", status);
  } else {
    vg_residency residency;
    status = vg_verify(tracker, VG_PURPOSE_MASK_ALL, &residency, NULL, 0);
    if (status != VG_OK) {
      exit_code = failed("vg_verify", status);
    } else {
      printf("vramguard C consumer: %d GPU(s); %llu allocation(s) checked; %s\n", (int)count,
             (unsigned long long)residency.checked,
             residency.resident ? "resident" : "NOT resident");
      if (!residency.resident) exit_code = 1;
    }
    vg_free(tracker, buffer);
  }
  vg_tracker_destroy(tracker);
  return exit_code;
}
