"""Deploying jobs: CloudFormation templates, the usage-plan definition, and the deploy command (never in the Lambda package)."""
