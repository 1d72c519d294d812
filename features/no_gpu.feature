Feature: A worker without the GPU it needs reports a coded error
  No host has a GPU with ordinal 63. Where there is no driver or no GPU the product answers
  VRAM-E001 (no usable GPU), elsewhere VRAM-E010 (no such device): it never falls back to the
  CPU, and its health endpoint says why it is unhealthy. These run with or without a GPU.

  Scenario: Opening a GPU the host does not have fails with a coded error
    When the worker opens GPU 63
    Then it fails with VRAM-E001 if the host has no usable GPU, else VRAM-E010
    And the error message starts with its code and says what to do next

  Scenario: The health endpoint of a worker whose check cannot run answers 503 with the error
    Given a health monitor of GPU 63 served over HTTP
    When the health monitor runs a check
    Then /health answers 503 with status "unhealthy" and last_error VRAM-E001 if the host has no usable GPU, else VRAM-E010
    And /health/ready answers 503
    And /health/live answers 200
