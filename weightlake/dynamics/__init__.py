"""Training dynamics: pure functions over torch modules and tensors.

- :mod:`~weightlake.dynamics.ntk`: empirical neural tangent kernels (``torch.func``), their
  spectra and the learning-rate bound, gradient descent on the linearised model.
- :mod:`~weightlake.dynamics.kernels`: analytic NNGP/NTK recursions of wide fully connected
  networks (ReLU and erf closed forms) and the trainability phase diagram.
- :mod:`~weightlake.dynamics.grokfast`: gradient filters (EMA and windowed moving average)
  called between ``backward()`` and ``step()``, and their transfer functions.
- :mod:`~weightlake.dynamics.oscillation`: training runs that record per-step gradients of
  chosen weights and accuracies, and the gradients' spectra.
- :mod:`~weightlake.dynamics.superweights`: single-weight ablation scans (cached forward
  passes), the activation-spike proxy and enforced sparsity.
- :mod:`~weightlake.dynamics.gated`: a toy causal transformer, gated (elementwise or head-wise)
  or not, and its attention-sink diagnostics.

Nothing here opens a lake transaction: lake-level runs live in :mod:`weightlake.compute`.
"""
