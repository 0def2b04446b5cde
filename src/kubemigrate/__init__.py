"""kubemigrate: the database side of a Kubernetes release as a handful of invoke tasks.

The public surface, what users' files and Job images rely on:

- `kubemigrate.tasks.namespace`: the invoke Collection a project's `tasks.py` exposes;
- `kubemigrate.models.discover`: imports the model modules alembic.ini names, so that env.py's
  `target_metadata` holds their tables (`inv db.init`'s env.py calls it);
- `python -m kubemigrate upgrade|downgrade|stamp REVISION`: what a migration Job runs.

Both names are also reachable here (`kubemigrate.namespace`, `kubemigrate.discover`), imported
on first use so that `import kubemigrate.models` stays light. Everything else is internal. The
package's folders are its layers, lowest first: `errors`, `settings`, `files` and `units`;
`process`; `postgres`; `kubernetes`; `target`; `migrations`; `review`; `release`; `tasks`. A
module imports only its own layer and those below it.
"""

__version__ = "0.1.0"
__all__ = ["__version__", "discover", "namespace"]


def __getattr__(name: str) -> object:
    """`namespace` and `discover`, imported when first asked for."""
    if name == "namespace":
        from kubemigrate.tasks import namespace

        return namespace
    if name == "discover":
        from kubemigrate.models import discover

        return discover
    raise AttributeError(f"module 'kubemigrate' has no attribute {name!r}")
