@gpu
Feature: A budget refuses before the device is asked
  A worker's VRAM budget is charged before any device allocation. Exactly at the limit
  succeeds; beyond it, or beyond one purpose's share, the allocation fails with VRAM-E002 and
  the figures that explain it, and neither the budget, the tracker nor the device changes.

  Background:
    Given a GPU on this host

  Scenario: The last byte of a budget can be allocated, one more cannot
    Given a worker with 64 MiB VRAM available
    When the worker attempts to allocate 64 MiB for intermediate buffers
    Then the allocation succeeds and the budget has 0 bytes available
    When the worker attempts to allocate 1 byte for intermediate buffers
    Then the allocation fails with VRAM_OOM error
    And the error message includes "IntermediateBuffers: 64 MiB, requested: 1 byte, available: 0 bytes"
    And the budget and the tracker are unchanged
    And the driver's free memory is unchanged

  Scenario: A per-purpose share refuses KV cache beyond it and changes nothing
    Given a worker with 1GB VRAM available, of which at most 256 MiB for KV cache
    And 200 MiB already allocated for KV cache
    When the worker attempts to allocate 100 MiB for KV cache
    Then the allocation fails with VRAM-E002
    And the error message includes "KVCache: 200 MiB, requested: 100 MiB, available: 56 MiB"
    And the budget and the tracker are unchanged
    And the driver's free memory is unchanged
