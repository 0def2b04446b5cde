"""The invoke Collections: `db`, `dev`, and the short top-level names of the release steps.

`inv migrate` is `inv db.upgrade` under the short name users chain
(`inv backup migrate verify deploy`).
"""

from invoke import Collection, Task

from kubemigrate.tasks import backups, checks, db, dev


def short_name(original: Task, name: str) -> Task:
    """The same task body and options under a top-level name (without the original's aliases)."""
    return Task(
        original.body,
        name=name,
        positional=original.positional,
        optional=original.optional,
        iterable=original.iterable,
        incrementable=original.incrementable,
        help=original.help,
    )


for step in (backups.backup, backups.restore, backups.list_backups, checks.verify):
    db.ns.add_task(step)

namespace = Collection()
namespace.add_collection(db.ns)
namespace.add_collection(dev.ns)
namespace.add_task(short_name(db.upgrade, "migrate"))
namespace.add_task(short_name(backups.backup, "backup"))
namespace.add_task(short_name(checks.verify, "verify"))
