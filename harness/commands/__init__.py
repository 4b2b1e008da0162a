"""One module per CLI command group. Each exposes `register(subparsers)`.

A module is imported only when the CLI starts, and each command imports its heavy
dependencies (torch, mlflow, optuna) inside its handler so `vireid --help` stays fast.
"""
