"""technique=kd: rules.py (torch-free schema), stage.py (the Stage)."""
