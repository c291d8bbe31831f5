"""Files compressor writes and reads: the pickle-free artifact (artifact.py, its tensor coding in
coding.py), the one loader of every model file (checkpoint.py), and the cache of trained baselines
(cache.py). Nothing here imports a technique."""
