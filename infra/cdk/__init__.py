"""AWS CDK (Python) app for the serving stack: network, shared state, API + tracking services, observability.

Synthesize offline with ``python -m infra.cdk.app -c env=staging`` (or the CDK CLI with ``cdk.json``); no
account is named anywhere, so the templates are environment-agnostic and deployable to any account.
"""
