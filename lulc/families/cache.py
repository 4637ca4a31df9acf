"""Where a family's release is in the local Hugging Face cache (never downloaded). Apart from the records, so
that the stages which only read the records (every stage validates its config section against the schema the
records fill in) do not import ``huggingface_hub``: start-up, the weights loader and ``python -m lulc.families``
do."""

from __future__ import annotations

from lulc.families.record import Release


def cached_release(release: Release) -> str | None:
    """The path of ``release`` in the local Hugging Face cache, or None when it is not there."""
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(release.repo, release.filename)
    return path if isinstance(path, str) else None
