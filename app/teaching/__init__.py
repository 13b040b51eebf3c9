"""Teaching: lessons (validated data files), their widgets, the claims with their measured verdicts."""
