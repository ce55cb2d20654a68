"""Training for newwave's learned components (CLAP fine-tuning, the lyrics-description bi-encoder,
the fusion MLP). Nothing is implemented here yet: this package holds no public API."""

__all__: list[str] = []
