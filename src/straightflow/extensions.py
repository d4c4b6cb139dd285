"""Imports the modules that register optional methods, datasets, models,
plots and commands into the core registries. Import this module (the CLI and
the package root do) to get everything."""
