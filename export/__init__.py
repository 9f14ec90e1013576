"""Export a trained controller to ONNX and run it without torch.

- :mod:`export.exporter` (torch): ``export_checkpoint`` / ``export_learner`` write
  ``dynamics.onnx``, ``adapt_step.onnx`` or ``encode.onnx``, ``controller.onnx`` and
  ``manifest.json`` (staged, then moved into place once checked); ``export_planner``,
  metadata and ``export_controller``.
- :mod:`export.graphs` (torch): the modules traced to ONNX and the adapters that host a
  learner's adaptation.
- :mod:`export.parity` (torch): the torch references and ``verify_export`` (ONNX Runtime
  against torch on random inputs and a recorded trajectory).
- :mod:`export.policy` (torch): ``adapt export-policy``'s deploy folders.
- :mod:`export.runtime` (no torch): the robot side — ``artifacts`` (the contract, errors,
  validation), ``session`` (``ControllerSession``), ``policy`` (``PolicySession``), ``loop``
  (the fixed-rate ``run``), ``sim_robot`` (``SimRobot``) and ``cli`` (``adapt deploy``).

This package module imports nothing, so ``import export.runtime`` stays torch-free.
See docs/export.md for the artifact contract.
"""
