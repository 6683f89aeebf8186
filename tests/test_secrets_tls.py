"""TLS to Redis and MySQL, and credentials from Secrets Manager that never reach a log line."""

import json
import subprocess
import time
import uuid
from dataclasses import replace

import boto3
import pymysql
import pytest

from chalicelib import runtime as runtime_module
from chalicelib.runtime import Runtime
from chalicelib.store import connect_args
from local import services


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """A throw-away CA and a server certificate for 127.0.0.1, made with openssl."""
    d = tmp_path_factory.mktemp("certs")

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    for name in ("ca", "other-ca"):
        openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.crt",
            "-days",
            "2",
            "-subj",
            f"/CN={name}",
        )
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"
    )
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext",
    )
    return d


@pytest.fixture
def secretsmanager(moto_url):
    return boto3.client("secretsmanager", endpoint_url=moto_url, region_name="us-east-1")


def _health(api):
    return api.request("GET", "/health", key=None).json["checks"]


def test_redis_over_tls_verifies_the_server(settings, certs, tmp_path, api):
    proc, port = services.start_redis(
        tmp_path,
        "--tls-port",
        "{port}",
        "--tls-cert-file",
        str(certs / "server.crt"),
        "--tls-key-file",
        str(certs / "server.key"),
        "--tls-ca-cert-file",
        str(certs / "ca.crt"),
        "--tls-auth-clients",
        "no",
    )
    try:
        runtime_module.use(
            Runtime(replace(settings, redis_url=f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={certs}/ca.crt"))
        )
        job_id = api.submit("sleep", {"steps": 1}).json["jobId"]
        assert api.get(job_id).json["status"] == "PENDING"
        assert _health(api)["redis"] == "ok"

        runtime_module.use(
            Runtime(replace(settings, redis_url=f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={certs}/other-ca.crt"))
        )
        assert _health(api)["redis"] == "unavailable"  # a server the configured CA did not sign
        runtime_module.use(Runtime(replace(settings, redis_url=f"redis://127.0.0.1:{port}/0")))
        assert _health(api)["redis"] == "unavailable"  # plain text to a TLS port
    finally:
        services.stop(proc)


@pytest.fixture(scope="module")
def tls_mysql(certs, tmp_path_factory):
    """A private MariaDB that speaks TLS, with a user that may only log in over TLS."""
    d = tmp_path_factory.mktemp("mariadb")
    proc, port = services.start_mariadb(
        d, f"--ssl-cert={certs}/server.crt", f"--ssl-key={certs}/server.key", f"--ssl-ca={certs}/ca.crt"
    )
    root = None
    for _ in range(100):
        try:
            root = pymysql.connect(host="127.0.0.1", port=port, user="root", password="", autocommit=True)
            break
        except pymysql.OperationalError:
            time.sleep(0.1)
    assert root is not None, "mariadbd did not start"
    with root.cursor() as cur:
        cur.execute("CREATE USER 'tls_only'@'%' IDENTIFIED BY 'tls-pass' REQUIRE SSL")
        cur.execute("GRANT ALL ON *.* TO 'tls_only'@'%'")
    root.close()
    yield port, f"mysql://tls_only:tls-pass@127.0.0.1:{port}/mysql"
    services.stop(proc)


def test_mysql_over_tls_verifies_the_server(settings, certs, tls_mysql, api):
    port, url = tls_mysql
    tls = replace(settings, mysql_url=url, mysql_tls=True, mysql_tls_ca=str(certs / "ca.crt"))
    runtime_module.use(Runtime(tls))
    assert _health(api)["mysql"] == "ok"  # this user may only log in over TLS

    runtime_module.use(Runtime(replace(tls, mysql_tls_ca=str(certs / "other-ca.crt"))))
    assert _health(api)["mysql"] == "unavailable"  # a server the configured CA did not sign
    # The shared MariaDB has TLS disabled: with TLS required we refuse it rather than fall back.
    runtime_module.use(Runtime(replace(settings, mysql_tls=True)))
    assert _health(api)["mysql"] == "unavailable"


def test_credentials_from_secrets_manager_work_and_never_reach_the_logs(
    settings, mysql, secretsmanager, tmp_path, api, events, log_output, capsys
):
    password, token = f"pw-{uuid.uuid4().hex}", f"tok-{uuid.uuid4().hex}"
    user = f"jobs_{uuid.uuid4().hex[:8]}"
    database = connect_args(settings.mysql_url)["database"]
    with mysql.cursor() as cur:
        cur.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", (password,))
        cur.execute(f"GRANT ALL ON `{database}`.* TO '{user}'@'%'")
    proc, port = services.start_redis(tmp_path, "--requirepass", token)
    try:
        mysql_secret = json.dumps({"username": user, "password": password})
        mysql_arn = secretsmanager.create_secret(Name=f"mysql-{user}", SecretString=mysql_secret)["ARN"]
        redis_arn = secretsmanager.create_secret(Name=f"redis-{user}", SecretString=token)["ARN"]
        configured = replace(
            settings,
            mysql_url=f"mysql://nobody@127.0.0.1:3306/{database}",
            mysql_secret_arn=mysql_arn,
            redis_url=f"redis://127.0.0.1:{port}/0",
            redis_auth_secret_arn=redis_arn,
        )
        runtime_module.use(Runtime(configured))

        job_id = api.submit("sleep", {"steps": 2, "stepMs": 0}).json["jobId"]
        events.drain()
        assert api.get(job_id).json["status"] == "COMPLETED"
        assert _health(api) == {"jobTypes": "ok", "mysql": "ok", "redis": "ok", "sqs": "ok"}

        printed = log_output.getvalue() + "".join(capsys.readouterr()) + repr(configured)
        assert job_id in log_output.getvalue()
        assert password not in printed and token not in printed
    finally:
        services.stop(proc)
        with mysql.cursor() as cur:
            cur.execute(f"DROP USER '{user}'@'%'")


def test_settings_never_print_credentials():
    from chalicelib.config import Settings

    shown = repr(
        Settings(
            mysql_url="mysql://u:hunter2@db/jobs", redis_url="rediss://:s3cret@cache:6379/0", redis_auth_token="t0ken"
        )
    )
    assert "hunter2" not in shown and "s3cret" not in shown and "t0ken" not in shown
