"""Searches over stage recipes: the accuracy budget (budget.py). They build every candidate with
the stage's own `apply` on a copy of the model."""
