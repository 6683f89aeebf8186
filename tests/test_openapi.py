"""The OpenAPI document: valid, in agreement with the routes, served, and fuzzed with schemathesis."""

import threading
from dataclasses import replace

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from openapi_spec_validator import validate
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance

import app as app_module
from chalicelib import openapi
from chalicelib import runtime as runtime_module
from chalicelib.jobs import JobTypes
from chalicelib.runtime import Runtime
from local import devserver, services
from tests.conftest import PROBE_MODULE

METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}

#: The job types of the test runs' runtime (the built-ins and the probe).
TYPES = JobTypes.load((PROBE_MODULE,))


def test_the_document_is_valid_openapi():
    validate(openapi.document(TYPES))


def test_the_routes_and_the_document_agree():
    routes = {(path, method.lower()) for path, methods in app_module.app.routes.items() for method in methods}
    documented = {
        (path, method)
        for path, item in openapi.document(TYPES)["paths"].items()
        for method in item
        if method in METHODS
    }
    assert routes == documented


def test_routes_that_need_a_key_are_documented_so():
    doc = openapi.document(TYPES)
    for path, methods in app_module.app.routes.items():
        for method, entry in methods.items():
            operation = doc["paths"][path][method.lower()]
            needs_key = operation.get("security", doc["security"]) != []
            assert needs_key == bool(entry.api_key_required), (path, method)


def test_every_job_type_publishes_its_payload_schema():
    variants = openapi.document(TYPES)["components"]["schemas"]["Submission"]["oneOf"]
    published = {v["properties"]["type"]["enum"][0]: v["properties"]["payload"] for v in variants}
    assert published == {name: TYPES.get(name).payload_schema for name in TYPES.names()}


def test_the_document_is_served(api):
    reply = api.request("GET", "/openapi.json", key=None)
    assert reply.status == 200
    assert reply.json == openapi.document(TYPES)


# --- fuzzing: schemathesis against the app served over HTTP on loopback -----------------------------
schema = schemathesis.openapi.from_dict(openapi.document(TYPES))


@pytest.fixture(scope="module")
def live_url():
    port = services.free_port()
    server = devserver.make_server(app_module.app, "127.0.0.1", port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    server.server.server_close()


@pytest.fixture
def served_runtime(settings):
    # An input bucket, so POST /uploads signs (no request is made: the bucket need not exist).
    runtime_module.use(Runtime(replace(settings, input_buckets=("fuzz-inputs",))))


@schema.parametrize()
@hypothesis_settings(max_examples=40, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzing_finds_no_server_error_and_no_response_off_the_document(case, live_url, served_runtime):
    # All checks but one: which key values exist is API Gateway's to decide (it answers 403 for an
    # unknown key before the function runs); the function itself only scopes jobs by the key.
    # And, for POST /jobs, /batches and the schedules' job templates only, that schema-valid data is
    # accepted: a payload naming an input object is a 400 unless the object exists under the caller's
    # prefix, which no schema can say.
    excluded = [ignored_auth]
    if (case.method, case.path) in (
        ("POST", "/jobs"),
        ("POST", "/batches"),
        ("POST", "/schedules"),
        ("PATCH", "/schedules/{schedule_id}"),
    ):
        excluded.append(positive_data_acceptance)
    case.call_and_validate(base_url=live_url, headers={"x-api-key": "fuzz-key"}, excluded_checks=excluded)
