"""Files to tables and statistics: results, correlations, claims, tokens, the authors' numbers."""
