"""The playground: a learner's switches parsed once per request, traces and their cache, figures, the
architecture diagram, the page and /api/trace."""
