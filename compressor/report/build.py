def build(sweep): return sweep
