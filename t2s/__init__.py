"""Core of Text2SQL Ops: code shared by evaluation and serving.

Dependency direction is one way: ``t2s`` ← ``evals`` ← ``pipelines`` and ``t2s`` ← ``serving``.
Modules here import nothing heavy at import time (no mlflow, great-expectations, llama-index), except
``t2s.bundle``, which is an MLflow model class and is imported only where bundles are logged or loaded.
"""

__version__ = "0.1.0"
