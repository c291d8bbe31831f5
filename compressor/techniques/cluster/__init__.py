"""technique=cluster: rules.py (torch-free schema), stage.py (the Stage), callback.py (its Lightning
callback)."""
