"""The web dashboard over the central database: aggregates (pure), queries, auth, HTTP."""
