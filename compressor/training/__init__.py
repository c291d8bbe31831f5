"""One Lightning fit (fit.py), what lets it resume after a kill (resume.py), and DDP inside a
Hydra multirun (ddp.py)."""
