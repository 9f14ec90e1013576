"""policies: meta-trained neural policies that adapt through their recurrent state.

A GRU/LSTM policy (and a feed-forward one for comparison) over (observation, previous action,
previous reward), trained by DAgger from the adaptive-MPC teacher (``method = "distill"``) or by
RL^2 with PPO (``method = "rl2"``); ``adapt train-policy``, ``adapt eval-policy`` and
``adapt export-policy`` are the command line. See docs/policies.md.
"""

from policies.config import PRESETS, PolicyTrainConfig, load_policy_config
from policies.evaluate import PolicyController, evaluate, evaluate_trials, policy_controller
from policies.networks import Policy, RunningNorm
from policies.training import policy_from_checkpoint, train_policy

__all__ = ["PRESETS", "Policy", "PolicyController", "PolicyTrainConfig", "RunningNorm",
           "evaluate", "evaluate_trials", "load_policy_config", "policy_controller",
           "policy_from_checkpoint", "train_policy"]
