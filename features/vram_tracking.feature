@gpu
Feature: VRAM Allocation Tracking
  Seed 001's three scenarios, in its words, over real allocations on GPU 0. The seed writes GB for
  GiB: its 2 GB worker is a 2 GiB budget (2^30 bytes to the GB throughout).

  Background:
    Given a GPU on this host

  Scenario: Worker tracks VRAM allocation for model weights
    Given a worker with CUDA context initialized
    When the worker loads a 1GB model into VRAM
    Then the VRAM tracker reports 1GB usage for ModelWeights
    And the health endpoint shows vram_bytes_used >= 1GB

  Scenario: Worker detects VRAM OOM and reports breakdown
    Given a worker with 2GB VRAM available
    And 1.5GB already allocated for model weights
    When the worker attempts to allocate 1GB for KV cache
    Then the allocation fails with VRAM_OOM error
    And the error message includes "ModelWeights: 1.5GB, requested: 1GB, available: 0.5GB"
    And the budget and the tracker are unchanged
    And the driver's free memory is unchanged

  Scenario: Worker tracks deallocation correctly
    Given a worker with 1GB VRAM allocated
    When the worker deallocates the memory
    Then the VRAM tracker reports 0GB usage
    And the driver's free memory is back to where it was when the worker started
    And subsequent allocations succeed
