"""Static leaderboard of rocobench results, rendered from RunRecords only."""

from __future__ import annotations

from leaderboard.render import load_site, render_html, render_site, site_to_json

__all__ = ["load_site", "render_html", "render_site", "site_to_json"]
