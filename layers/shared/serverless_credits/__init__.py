"""Serverless Credits: the shared library of the prepaid-credits ledger.

Layers, from the bottom up:
- `config`, `money`, `errors`, `models`: settings, exact amounts, domain errors, item shapes.
- `store`: the only module that talks to DynamoDB (boto3); turns ClientErrors into domain errors.
- `ledger`, `accounts`, `prices`, `queries`: business operations and read views.
- `responses`: the one mapping from domain errors to HTTP responses and Debit error payloads.
- `client`: what other Lambda functions use to charge credits through the Debit function.
"""
