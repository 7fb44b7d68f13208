"""Helpers shared by the pages (kept out of `pages/`, which holds only pages)."""
