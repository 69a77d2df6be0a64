"""Who wants what: subscriptions, the rules of who may receive which kind, and the routes that manage them."""
