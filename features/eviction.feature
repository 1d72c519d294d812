@gpu
Feature: Least-recently-used eviction of model slots on the device
  Slots backed by real device memory: eviction picks the fewest idle slots that make room, the
  least recently used among them, and gives their memory back to the driver. A load that no
  eviction could make fit evicts nothing.

  Background:
    Given a GPU on this host

  Scenario: Evicting the least recently used model gives its memory back to the driver
    Given a device-backed slot manager with a budget of 1 GiB
    And models "A", "B" and "C" of 256 MiB each are loaded in that order
    And model "A" is touched
    When the worker evicts least-recently-used models to free 256 MiB
    Then the evicted models are "B"
    And the slots are "C" and "A", least recently used first
    And the tracker holds 512 MiB for ModelWeights
    And the driver's free memory has risen by at least 256 MiB

  Scenario: Loading a model past the critical level evicts the least recently used model
    Given a device-backed slot manager with a budget of 1 GiB
    And models "A", "B" and "C" of 300 MiB each are loaded in that order
    And model "A" is touched
    When model "D" of 300 MiB is loaded
    Then the allocation succeeds
    And the evicted models are "B"
    And the slots are "C", "A" and "D", least recently used first
    And the tracker holds 900 MiB for ModelWeights

  Scenario: A model that cannot fit even after evicting every idle model evicts nothing
    Given a device-backed slot manager with a budget of 1 GiB
    And models "A" and "B" of 256 MiB each are loaded in that order
    And model "A" is pinned
    When model "C" of 900 MiB is loaded
    Then the load fails with VRAM-E002
    And no model was evicted and the slots are unchanged
    And the tracker holds 512 MiB for ModelWeights
    And the driver's free memory is unchanged
