"""Multi-run workflows on top of training and evaluation: beta sweeps, teacher pairs
from a run, the demo. Each is a plain function; the CLI only parses arguments."""
