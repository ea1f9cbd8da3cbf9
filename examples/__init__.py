"""Runnable examples of MLQ; a package so that workers started from the repository root
can load them with `--import examples.retrain.listeners:retrain`."""
