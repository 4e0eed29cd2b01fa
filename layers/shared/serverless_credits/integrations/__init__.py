"""Other AWS services: the Lambda client for consumers, API Gateway keys."""
