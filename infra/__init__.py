"""Deployment: the AWS stacks (``infra.cdk``, needs the ``infra`` extra) and the deploy/rollback logic."""
