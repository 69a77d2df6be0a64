"""The rendered report of an analysis: HTML with inline SVG charts (printed to PDF by an adapter)."""
