"""technique=kd: settings.py (its settings class, torch-free), stage.py (the Stage)."""
