"""Drawings of a compiled network: block/op graphs (graphviz), connectivity matrices and
weight heat maps (matplotlib). Nothing in the compiler imports this package."""
