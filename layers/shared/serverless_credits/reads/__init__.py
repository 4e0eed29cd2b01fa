"""Read models for the customer API: balance, transactions pages, stats, summary."""
