"""glaze: fill new spreadsheet columns from enrichment providers, resumably."""

from __future__ import annotations

__version__ = "0.1.0"
