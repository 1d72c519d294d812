Feature: Model slots within a budget
  Seed 000's three edge cases, on a bookkeeping slot manager: no GPU is needed, and the budget
  arithmetic, the refusal and the least-recently-used order are the product's.

  Scenario: Edge case 1 - a slot exactly at the budget fits
    Given a slot manager with a budget of 1000 bytes
    When model "Semantic" of 1000 bytes is allocated
    Then the allocation succeeds
    And the slot manager has 1000 bytes allocated and 0 bytes available

  Scenario: Edge case 2 - an allocation over the budget is rejected and changes nothing
    Given a slot manager with a budget of 1000 bytes
    And model "Semantic" of 900 bytes is allocated
    When model "TemporalRecent" of 200 bytes is allocated
    Then the allocation fails with VRAM-E002
    And the error message includes "requested: 200 bytes, available: 100 bytes"
    And no model was evicted and the slots are unchanged
    And the slot manager has 900 bytes allocated and 100 bytes available

  Scenario: Edge case 3 - the LRU candidate is the oldest slot not touched since
    Given a slot manager with a budget of 10000 bytes and a manual clock
    And models "Semantic", "TemporalRecent" and "TemporalPeriodic" of 1000 bytes each are allocated 10 ms apart
    When model "Semantic" is touched
    Then the LRU candidate is "TemporalRecent"
    And the slots are "TemporalRecent", "TemporalPeriodic" and "Semantic", least recently used first
