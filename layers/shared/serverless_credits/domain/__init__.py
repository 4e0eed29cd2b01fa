"""Pure domain: money, errors, accounts, entries, commands, posting rules. No boto3, no I/O."""
