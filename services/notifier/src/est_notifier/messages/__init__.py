"""What a message says: e-mail text and HTML of events, digests, reminders and notices."""
