"""technique=cluster: settings.py (its settings class, torch-free), stage.py (the Stage), callback.py (its Lightning
callback)."""
