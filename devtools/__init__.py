"""Development-only tools: template reading, DynamoDB Local, the local stack, OpenAPI."""
