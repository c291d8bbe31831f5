"""technique=quant: settings.py (its settings class, torch-free), stage.py (the Stage), callback.py (its Lightning
callback), budget.py (its accuracy-budget search), scan.py (its per-layer scan)."""
