"""Web plumbing every area shares: the app factory, settings, errors, languages, templates, the model limiter."""
