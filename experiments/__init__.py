"""make bench and the studies behind the defaults: one module per bench part (throughput, pruning,
distillation, quantization, deploy, budgets, search), their shared settings and arithmetic
(common.py), the command (bench.py), and the studies kd.py and recipes.py. Results and the
commands that made them: experiments/README.md."""
