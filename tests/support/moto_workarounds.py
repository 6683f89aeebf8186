"""Chalice's CLI made to deploy its REST API to moto's server. For tests only: never used against AWS.

Why: `chalice deploy` imports the API as Swagger 2.0 (ImportRestApi / PutRestApi). moto 5.2.5 reads
`info.description` (Chalice writes none) and then accepts only OpenAPI 3, and its import drops the
`security` of each method, so `apiKeyRequired` would be lost (seen with chalice 1.34.0 and moto 5.2.5).
AWS and LocalStack take Chalice's Swagger as it is.

What: while this module runs Chalice's CLI, `TypedAWSClient.import_rest_api` and
`update_api_from_swagger` send moto an OpenAPI 3 rewrite of the same paths and integrations, then put
back `apiKeyRequired` on every method whose Swagger asked for an API key (moto has no UpdateMethod,
so: PutMethod with apiKeyRequired=True, then PutIntegration again). Everything else is Chalice's own.

Use: `python -m tests.support.moto_workarounds <chalice arguments>`, e.g. as the deploy command's
`--chalice-command` in tests/test_deploy.py.

A second gap, in moto's CloudFormation rather than in Chalice: `delete_what_moto_stacks_leave`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from chalice import awsclient

#: The name Chalice gives the API-key security scheme in its Swagger.
API_KEY_SCHEME = "api_key"


def openapi3_for_moto(swagger: dict[str, Any]) -> dict[str, Any]:
    """The part of Chalice's Swagger 2.0 that moto's importer reads, as OpenAPI 3."""
    paths = {
        path: {
            method: {
                "responses": doc.get("responses", {}),
                "x-amazon-apigateway-integration": doc["x-amazon-apigateway-integration"],
            }
            for method, doc in item.items()
            if "x-amazon-apigateway-integration" in doc
        }
        for path, item in swagger["paths"].items()
    }
    info = swagger["info"]
    return {
        "openapi": "3.0.1",
        "paths": paths,
        "info": {
            "title": info["title"],
            "version": info.get("version", "1.0"),
            "description": info.get("description", info["title"]),
        },
    }


def restore_api_key_required(client: Any, rest_api_id: str, swagger: dict[str, Any]) -> list[str]:
    """Mark the methods whose Swagger requires an API key; returns them as 'METHOD /path'."""
    resources = {r["path"]: r["id"] for r in client.get_resources(restApiId=rest_api_id, limit=500)["items"]}
    restored = []
    for path, item in swagger["paths"].items():
        for method, doc in item.items():
            if not any(API_KEY_SCHEME in s for s in doc.get("security", [])):
                continue
            integration = doc["x-amazon-apigateway-integration"]
            resource_id, http_method = resources[path], method.upper()
            client.put_method(
                restApiId=rest_api_id,
                resourceId=resource_id,
                httpMethod=http_method,
                authorizationType="NONE",
                apiKeyRequired=True,
            )
            client.put_integration(
                restApiId=rest_api_id,
                resourceId=resource_id,
                httpMethod=http_method,
                type=integration["type"].upper(),
                integrationHttpMethod=integration["httpMethod"],
                uri=integration["uri"],
                passthroughBehavior=integration.get("passthroughBehavior", "WHEN_NO_MATCH"),
            )
            restored.append(f"{http_method} {path}")
    return restored


def _import_rest_api(self, swagger_document, endpoint_type):
    client = self._client("apigateway")
    rest_api_id = client.import_rest_api(body=json.dumps(openapi3_for_moto(swagger_document)))["id"]
    restore_api_key_required(client, rest_api_id, swagger_document)
    return rest_api_id


def _update_api_from_swagger(self, rest_api_id, swagger_document):
    client = self._client("apigateway")
    client.put_rest_api(restApiId=rest_api_id, mode="overwrite", body=json.dumps(openapi3_for_moto(swagger_document)))
    restore_api_key_required(client, rest_api_id, swagger_document)


def delete_what_moto_stacks_leave(ec2: Any, vpc_id: str) -> None:
    """Delete the network stack's VPC endpoints and route table, which moto's DeleteStack leaves behind.

    moto 5.2.5 has no CloudFormation delete for AWS::EC2::VPCEndpoint and AWS::EC2::RouteTable, so
    its DeleteStack then fails on the VPC ("has dependencies"). AWS deletes them with the stack.
    Call this before the teardown; the teardown then deletes everything else itself.
    """
    in_vpc = [{"Name": "vpc-id", "Values": [vpc_id]}]
    endpoints = [e["VpcEndpointId"] for e in ec2.describe_vpc_endpoints(Filters=in_vpc)["VpcEndpoints"]]
    if endpoints:
        ec2.delete_vpc_endpoints(VpcEndpointIds=endpoints)
    for table in ec2.describe_route_tables(Filters=in_vpc)["RouteTables"]:
        associations = table.get("Associations", [])
        if any(a.get("Main") for a in associations):
            continue
        for association in associations:
            ec2.disassociate_route_table(AssociationId=association["RouteTableAssociationId"])
        ec2.delete_route_table(RouteTableId=table["RouteTableId"])


def main(argv: list[str] | None = None) -> int:
    """Run Chalice's CLI with the two REST API calls replaced for moto."""
    from chalice.cli import main as chalice_main

    awsclient.TypedAWSClient.import_rest_api = _import_rest_api
    awsclient.TypedAWSClient.update_api_from_swagger = _update_api_from_swagger
    sys.argv = ["chalice", *(sys.argv[1:] if argv is None else argv)]
    return chalice_main()


if __name__ == "__main__":
    sys.exit(main())
