"""What speaks a wire protocol or a driver directly: the webhook transport, the SMTP sender, the mail outbox,
whether JetStream consumers have caught up."""
