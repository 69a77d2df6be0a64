"""EST Lägesbild notifier: subscriptions, signed webhooks, e-mail, retries and the delivery ledger."""
