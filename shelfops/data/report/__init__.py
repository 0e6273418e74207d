"""The behaviour report of a dataset: funnel, queries, affinities, segments, an audience export
(:mod:`.dataset` computes it, :mod:`.frames` holds the shared readers, :mod:`.html` draws it)."""
