Feature: Memory pressure levels at their thresholds
  Seed 000: Low below 50 % of the budget, Medium from 50 %, High from 80 %, Critical from 95 %;
  each bound belongs to the higher level, and eviction is advised at Critical only.

  Scenario Outline: <bytes> bytes of a 1000-byte budget is <level> pressure
    Given a slot manager with a budget of 1000 bytes
    When model "Semantic" of <bytes> bytes is allocated
    Then the allocation succeeds
    And the pressure level is <level> and eviction is <advice>

    Examples:
      | bytes | level    | advice      |
      | 499   | Low      | not advised |
      | 500   | Medium   | not advised |
      | 799   | Medium   | not advised |
      | 800   | High     | not advised |
      | 949   | High     | not advised |
      | 950   | Critical | advised     |
      | 1000  | Critical | advised     |
