"""Point MLflow at the configured tracking/registry store (imported only by commands that need MLflow)."""

from __future__ import annotations

import os
import warnings

from t2s.settings import Settings


def configure_mlflow(settings: Settings) -> str:
    """Set MLflow's tracking and registry URI from the settings and return it."""
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlflow

    uri = settings.mlflow_tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri
