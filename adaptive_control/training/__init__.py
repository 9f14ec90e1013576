"""Meta-training: typed configs, the window sampler and the training loop."""
