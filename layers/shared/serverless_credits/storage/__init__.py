"""DynamoDB: one module per item kind; the only place that builds requests and maps
ClientError codes to domain errors."""
