"""The API and worker Lambdas: routes and event handlers wired to chalicelib, nothing more."""

import os

from chalice import Chalice, Rate

from chalicelib import dashboard, http, observability, runtime
from chalicelib.config import Settings
from chalicelib.models import JobStatus

app = Chalice(app_name="jobs")
app.register_middleware(observability.around_invocation, "all")
app.register_middleware(http.normalise_errors, "http")


def _service():
    return runtime.get().service


def _owner() -> str:
    return http.owner(app.current_request, runtime.get().tenants)


def _body(*, required: bool = True):
    return http.json_body(app.current_request, max_bytes=runtime.get().settings.max_body_bytes, required=required)


@app.route("/jobs", methods=["POST"], api_key_required=True)
@http.api
def submit_job():
    request = app.current_request
    owner = _owner()
    http.query(request)
    body = http.json_body(request, max_bytes=runtime.get().settings.max_body_bytes)
    answer = _service().submit(owner, body, idempotency_key=http.idempotency_key(request))
    return http.job_response(answer, status=202, location=True)


@app.route("/jobs/{job_id}", methods=["GET"], api_key_required=True)
@http.api
def get_job(job_id):
    owner = _owner()
    http.query(app.current_request)
    return http.job_response(_service().get(owner, job_id))


@app.route("/jobs/{job_id}/result", methods=["GET"], api_key_required=True)
@http.api
def get_job_result(job_id):
    owner = _owner()
    http.query(app.current_request)
    return http.result_response(_service().result(owner, job_id))


@app.route("/jobs/{job_id}", methods=["DELETE"], api_key_required=True)
@http.api
def cancel_job(job_id):
    owner = _owner()
    http.query(app.current_request)
    answer = _service().cancel(owner, job_id)
    return http.job_response(answer, status=200 if answer.job.status is JobStatus.CANCELLED else 202)


@app.route("/jobs/{job_id}/retry", methods=["POST"], api_key_required=True)
@http.api
def retry_job(job_id):
    owner = _owner()
    http.query(app.current_request)
    return http.job_response(_service().retry(owner, job_id, _body(required=False)), status=202)


@app.route("/jobs/cancel", methods=["POST"], api_key_required=True)
@http.api
def cancel_jobs():
    owner = _owner()
    http.query(app.current_request)
    return http.cancelled_response(_service().cancel_many(owner, _body()))


@app.route("/jobs", methods=["GET"], api_key_required=True)
@http.api
def list_jobs():
    request = app.current_request
    owner = _owner()
    params = http.query(request, "status", "type", "limit", "cursor", "ids")
    return http.page_response(_service().list(owner, **params))


@app.route("/batches", methods=["POST"], api_key_required=True)
@http.api
def submit_batch():
    request = app.current_request
    owner = _owner()
    http.query(request)
    body = http.json_body(request, max_bytes=http.BATCH_BODY_FACTOR * runtime.get().settings.max_body_bytes)
    return http.batch_submitted(
        runtime.get().batches.submit(owner, body, idempotency_key=http.idempotency_key(request))
    )


@app.route("/batches/{batch_id}", methods=["GET"], api_key_required=True)
@http.api
def get_batch(batch_id):
    owner = _owner()
    params = http.query(app.current_request, "cursor", "limit")
    return http.batch_response(runtime.get().batches.get(owner, batch_id, **params))


@app.route("/batches/{batch_id}", methods=["DELETE"], api_key_required=True)
@http.api
def cancel_batch(batch_id):
    owner = _owner()
    http.query(app.current_request)
    return http.batch_response(runtime.get().batches.cancel(owner, batch_id))


@app.route("/jobs/{job_id}/deliveries", methods=["GET"], api_key_required=True)
@http.api
def get_job_deliveries(job_id):
    owner = _owner()
    http.query(app.current_request)
    return http.deliveries_response(_service().deliveries(owner, job_id))


@app.route("/schedules", methods=["POST"], api_key_required=True)
@http.api
def create_schedule():
    request = app.current_request
    owner = _owner()
    http.query(request)
    body = http.json_body(request, max_bytes=runtime.get().settings.max_body_bytes)
    return http.schedule_response(runtime.get().schedules.create(owner, body), status=201)


@app.route("/schedules", methods=["GET"], api_key_required=True)
@http.api
def list_schedules():
    owner = _owner()
    params = http.query(app.current_request, "limit", "cursor")
    return http.schedules_response(runtime.get().schedules.list(owner, **params))


@app.route("/schedules/{schedule_id}", methods=["GET"], api_key_required=True)
@http.api
def get_schedule(schedule_id):
    owner = _owner()
    http.query(app.current_request)
    return http.schedule_response(runtime.get().schedules.get(owner, schedule_id))


@app.route("/schedules/{schedule_id}", methods=["PATCH"], api_key_required=True)
@http.api
def update_schedule(schedule_id):
    request = app.current_request
    owner = _owner()
    http.query(request)
    body = http.json_body(request, max_bytes=runtime.get().settings.max_body_bytes)
    return http.schedule_response(runtime.get().schedules.update(owner, schedule_id, body))


@app.route("/schedules/{schedule_id}", methods=["DELETE"], api_key_required=True)
@http.api
def delete_schedule(schedule_id):
    owner = _owner()
    http.query(app.current_request)
    runtime.get().schedules.delete(owner, schedule_id)
    return http.no_content_response()


@app.route("/webhook-secret", methods=["GET"], api_key_required=True)
@http.api
def get_webhook_secret():
    owner = _owner()
    http.query(app.current_request)
    return http.secret_response(runtime.get().signing_secrets.current(owner))


@app.route("/uploads", methods=["POST"], api_key_required=True)
@http.api
def create_upload():
    request = app.current_request
    owner = _owner()
    http.query(request)
    body = http.json_body(request, max_bytes=runtime.get().settings.max_body_bytes)
    return http.upload_response(runtime.get().uploads.create(owner, body))


@app.route("/limits", methods=["GET"], api_key_required=True)
@http.api
def get_limits():
    owner = _owner()
    http.query(app.current_request)
    return http.usage_response(_service().usage(owner))


@app.route("/health", methods=["GET"])
@http.api
def health():
    return http.health_response(*runtime.get().health())


@app.route("/openapi.json", methods=["GET"])
def openapi_document():
    from chalicelib import openapi  # every module's limits: loaded for this route only

    return openapi.document(runtime.get().job_types, upload_max_bytes=runtime.get().settings.upload_max_bytes)


@app.route("/dashboard", methods=["GET"])
@http.api
def dashboard_page():
    return http.asset_response(*dashboard.asset("index.html"), upload_origin=runtime.get().uploads.origin)


@app.route("/dashboard/{name}", methods=["GET"])
@http.api
def dashboard_file(name):
    return http.asset_response(*dashboard.asset(name))


_queues = Settings.from_env()  # Chalice reads the queue names when it imports the app
runtime.preload(os.environ)  # on demand, nothing: each function imports its modules on first use


@app.on_sqs_message(queue=_queues.jobs_queue_name, batch_size=10)
def run_jobs(event):
    return runtime.get().worker.handle_batch(event.to_dict()["Records"], event.context)


@app.on_sqs_message(queue=_queues.jobs_dlq_name, batch_size=10)
def fail_dead_letters(event):
    return runtime.get().sweeper.fail_dead_letters(event.to_dict()["Records"])


# High-priority jobs: their own queue, function and reserved concurrency, so a normal backlog never delays them.
@app.on_sqs_message(queue=_queues.jobs_high_queue_name, batch_size=10)
def run_high_jobs(event):
    return runtime.get().worker.handle_batch(event.to_dict()["Records"], event.context)


@app.on_sqs_message(queue=_queues.jobs_high_dlq_name, batch_size=10)
def fail_high_dead_letters(event):
    return runtime.get().sweeper.fail_dead_letters(event.to_dict()["Records"])


@app.on_sqs_message(queue=_queues.webhooks_queue_name, batch_size=10)
def deliver_webhooks(event):
    return runtime.get().deliverer.handle_batch(event.to_dict()["Records"])


@app.schedule(Rate(1, unit=Rate.MINUTES))
def sweep(event):
    runtime.get().sweeper.sweep()


@app.lambda_function(name="migrate")
def migrate(event, context):
    """Apply pending schema migrations (from inside the VPC); `make deploy` invokes it before traffic moves."""
    return runtime.get().migrate()
