"""EST Lägesbild web front end (static single-page app + same-origin gateway to the service APIs)."""
