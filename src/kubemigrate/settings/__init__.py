"""Settings, the bottom layer with `errors`, `files` and `units`: how a value's text is read
and its range (`kinds`), every setting declared once as the typed `Settings` (`declared`), and
where each value comes from: defaults, `.env` files, the environment (`sources`).

Imports: `kubemigrate.errors` only.
"""
