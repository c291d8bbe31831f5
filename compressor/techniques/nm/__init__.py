"""technique=nm: N:M semi-structured sparsity (2:4 by default), the pattern sparse tensor cores run."""
