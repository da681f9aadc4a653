"""Property-based API tests: schemathesis generates requests from the app's own OpenAPI document (with a
valid admin API key), valid and invalid ones, and checks every answer: no server error, status codes and
bodies as documented, valid data accepted and invalid data refused, authentication not ignored. Bounded
examples per operation, so it runs in the default suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from serving.app import create_app
from tests.serving_prod_support import write_api_keys
from tests.serving_support import FakeOpenAI, build_registry, make_settings, write_experiment

ADMIN_KEY = "t2s_schemathesis-admin-key-0123456789"


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory, shop_db: Path, fake: FakeOpenAI) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("schemathesis")
    reg = build_registry(root, shop_db, fake.url)
    s = make_settings(reg, f"sqlite:///{root / 'serving.db'}", write_experiment(root / "ab.yaml"),
                      serve_auth="required", serve_user_hash_key="schemathesis-user-hash-key",
                      serve_api_keys_file=write_api_keys(root / "keys.json", {"fuzz": (ADMIN_KEY, "admin")}),
                      serve_rate_limit="100000/minute", serve_rate_limit_other="100000/minute", serve_metrics="none")
    app = create_app(s)
    with TestClient(app):  # runs the lifespan: the service exists while schemathesis calls the app
        yield schemathesis.openapi.from_asgi("/openapi.json", app)


def test_api_matches_its_openapi_document(api_schema: Any) -> None:
    """Every operation, bounded examples each (one test: schemathesis' lazy pytest fixtures do not run on
    this pytest version, so the operations are iterated here with their hypothesis strategies)."""
    from hypothesis import given

    tested = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        # positive data must be accepted as documented; negative data (over a documented limit, wrong type,
        # a missing field) must be refused — both with the documented status codes and error shape
        for mode, examples in ((GenerationMode.POSITIVE, 10), (GenerationMode.NEGATIVE, 5)):

            @given(case=operation.as_strategy(mode))
            @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
            def check(case: Any) -> None:
                case.call_and_validate(headers={"X-API-Key": ADMIN_KEY})

            try:
                check()
            except Unsatisfiable:  # nothing can be invalid about it (no parameters, no body)
                assert mode is GenerationMode.NEGATIVE, operation.label
        tested.append(operation.label)
    assert {"POST /v1/sql", "POST /v1/feedback", "POST /admin/reload", "GET /health/ready"} <= set(tested)
