"""`credits-admin`: the operators' command line for Serverless Credits.

It invokes the AdminFunction (directly, with IAM; never through the customer API) on a
deployed stack (`--stack-name`) or on the local stack `make run` serves (`--local`).
See docs/operators.md."""
