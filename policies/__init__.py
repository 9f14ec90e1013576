"""policies: meta-trained neural policies that adapt through their recurrent state.

A GRU/LSTM policy (and a feed-forward one for comparison) over (observation, previous action,
previous reward), trained by DAgger from the adaptive-MPC teacher (``method = "distill"``) or by
RL^2 with PPO (``method = "rl2"``); ``adapt train-policy``, ``adapt eval-policy`` and
``adapt export-policy`` are the command line. See docs/policies.md.

Names are imported lazily so that the ``adapt`` command line can register these subcommands
without importing torch (``adapt deploy`` runs torch-free).
"""

import importlib as _importlib

_EXPORTS = {
    "policies.config": ("PRESETS", "PolicyTrainConfig", "load_policy_config"),
    "policies.evaluate": ("PolicyController", "evaluate_policy", "evaluate_trials",
                          "policy_controller"),
    "policies.networks": ("Policy", "RunningNorm"),
    "policies.training": ("policy_from_checkpoint", "train_policy"),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(_importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'policies' has no attribute {name!r}")
