"""Entry points: HTTP (API Gateway), Lambda invoke (Debit), stream events (materializer)."""
