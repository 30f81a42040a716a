"""Readers and writers (no Qt): structures, reflections, maps, Meerkat volumes, images, shards."""
