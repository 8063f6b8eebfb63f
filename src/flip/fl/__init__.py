"""Federated learning on Flower: tasks, apps and runtimes."""
