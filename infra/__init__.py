"""Deploying jobs: CloudFormation templates, the usage-plan definition, and the deploy command.

Never in the Lambda package.
"""
