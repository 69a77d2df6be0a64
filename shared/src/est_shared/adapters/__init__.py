"""What speaks a wire protocol or a driver directly, on behalf of the rest of ``est_shared``: SQLite pragmas and
the in-loop connection, raw schema DDL, JetStream pull requests, NATS internals, the HTTP server's protocol.
Everything else in the project reaches these only through the plumbing modules beside this package."""
