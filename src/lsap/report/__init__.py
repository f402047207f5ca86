"""A finished run's results as tables, figures, captions, the HTML report's pages and the
notebook, each with provenance; the statistics behind every contrast."""
