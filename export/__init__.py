"""Export a trained controller to ONNX and run it without torch.

- :mod:`export.onnx_export` (torch): ``export_checkpoint`` / ``export_learner`` write
  ``dynamics.onnx``, ``adapt_step.onnx`` or ``encode.onnx``, ``controller.onnx`` and
  ``manifest.json``, and check ONNX Runtime against torch.
- :mod:`export.runtime` (numpy + onnxruntime only): ``ControllerSession``, the session
  protocol and the fixed-rate loop ``run``.
- :mod:`export.policy_runtime` (numpy + onnxruntime only): ``PolicySession`` for the deploy
  folders of ``adapt export-policy`` (written by :mod:`export.policy_export`).
- :mod:`export.sim_robot` (mujoco + sims, no torch): ``SimRobot`` for ``run``.
- :mod:`export.contract`: file, tensor and metadata names shared by both sides.
- :mod:`export.cli`: ``adapt export`` and ``adapt deploy`` (controllers and policies).

This package module imports nothing, so ``import export.runtime`` stays torch-free.
See docs/export.md for the artifact contract.
"""
