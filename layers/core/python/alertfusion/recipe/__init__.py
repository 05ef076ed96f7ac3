"""Recipes (manifest v2): a bundle's own description of its windows, feature graph, models and
decision, and the numpy code that runs the graph (docs/RECIPES.md)."""

from alertfusion.recipe.schema import Recipe

__all__ = ["Recipe"]
