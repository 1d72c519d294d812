@gpu
Feature: The health endpoint follows residency
  The service (seed 000's 13 embedders in device memory) checks residency in the background.
  Model weights that fall back to host-visible memory make /health answer 503 and name them;
  once they are freed, the next check makes it 200 again.

  Background:
    Given a GPU on this host

  Scenario: Model weights falling back to managed memory turn /health to 503 until freed
    Given a running health service checking every 200 ms
    And /health answers 200 with status "healthy"
    When 1 MiB of model weights fall back to Managed memory as "weights fell back to unified memory"
    Then /health answers 503 naming the violation "weights fell back to unified memory" in Managed memory
    And /health/ready answers 503
    When the worker frees "weights fell back to unified memory"
    Then /health answers 200 with status "healthy"
    And /health/ready answers 200
