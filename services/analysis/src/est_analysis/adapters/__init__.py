"""What speaks a driver or a program directly: the headless browser that prints PDFs, the JetStream reader
of the picture history."""
