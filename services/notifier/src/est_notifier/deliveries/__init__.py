"""What goes out: the delivery ledger, fan-out, retries, digests, reminders and notices, personal data."""
