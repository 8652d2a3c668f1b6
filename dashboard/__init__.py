"""Tickhouse's web dashboard: a Streamlit app over the `marts` schema, read as `bi_reader`.

Start it with `python -m dashboard` (or `tickhouse dashboard`); see `dashboard.cli`.
"""
