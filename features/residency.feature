@gpu
Feature: Model weights stay in device memory
  Memory that a RAM fallback would produce — managed (unified) memory or pinned host memory — is
  a residency violation under ModelWeights. Verification names it, and passes again once it is
  freed.

  Background:
    Given a GPU on this host

  Scenario Outline: Model weights in <kind> memory are a violation until freed
    Given a worker with CUDA context initialized
    And 64 MiB of model weights in device memory as "encoder weights"
    When 1 MiB of model weights fall back to <kind> memory as "decoder weights"
    Then residency verification reports the violation "decoder weights": <kind> memory of type <type>, not device memory
    When the worker frees "decoder weights"
    Then residency verification passes with 1 allocation checked

    Examples:
      | kind       | type    |
      | Managed    | Managed |
      | PinnedHost | Host    |
