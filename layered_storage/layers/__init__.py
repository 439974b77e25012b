"""Layers: the transformations a LayeredStorage stacks (compression, encryption)."""
