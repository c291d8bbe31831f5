"""search=default: the search for the file to ship (space.py, frontier.py, launch.py, outputs.py).
Its trials are jobs; the accuracy budget inside one job is compressor/budget.py."""
