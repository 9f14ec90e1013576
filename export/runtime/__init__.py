"""The robot-side runtime: run an exported controller or policy with numpy and onnxruntime.

- :mod:`export.runtime.artifacts`: the artifact contract (file, tensor and metadata names),
  the runtime's errors and the validation of manifests and graphs.
- :mod:`export.runtime.session`: ``ControllerSession`` and the step protocol it shares.
- :mod:`export.runtime.policy`: ``PolicySession`` for ``adapt export-policy`` folders.
- :mod:`export.runtime.loop`: the fixed-rate loop ``run``, the ``Robot`` protocol, reports
  and the deadline watchdog.
- :mod:`export.runtime.sim_robot` (mujoco + sims): ``SimRobot`` for ``run``.
- :mod:`export.runtime.cli`: ``adapt deploy`` (also ``python -m export.runtime.cli deploy``).

Nothing here imports torch or the training packages (an import-linter contract and
tests/test_runtime.py check it). This package module imports nothing itself.
"""
