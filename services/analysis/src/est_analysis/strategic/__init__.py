"""Strategic analyses: persistent problems (k of n), quarter/tertial analyses, measures and re-decisions."""
