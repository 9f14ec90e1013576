"""The torch modules that become ONNX graphs.

- :mod:`export.graphs.cores`: the trained networks as buffers with explicit forwards
  (:class:`~export.graphs.cores.MLPCore`, :class:`~export.graphs.cores.RecurrentCore`,
  :class:`~export.graphs.cores.GainEncoderCore`), the MLP's SGD step being the learners' own,
  recorded with ``make_fx``.
- :mod:`export.graphs.adapters`: the adaptation inside the graphs, chosen from the learner's
  ``adaptation()`` description (:func:`~export.graphs.adapters.make_adapter`), and the graphs
  each adapter is exported as.
- :mod:`export.graphs.modules`: the graph modules (dynamics, adapt step, encoders, the
  whole controller step, the reward); the planner is the library's own config
  (:data:`adaptive_control.planning.PlannerConfig`), run through the same pure optimisers.

Weights are stored transposed (``[in, out]``) so every layer is one ``x @ W + b`` MatMul
without a per-call Transpose; the adapt_step outputs are transposed back to the PyTorch
``state_dict`` layout.
"""
