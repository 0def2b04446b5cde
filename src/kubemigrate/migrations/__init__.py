"""Alembic, for the project's own alembic.ini and env.py: the commands (`commands`, one function per
Alembic command) and what they stand on: the configuration and its layout (`config`, `layout`), one
command on a `Config` in either process (`executor`), failures as one line (`failures`), Alembic's
log lines (`logs`), what the database records (`recorder`), the revision graph read from the files
(`revisions`), a branch's revisions (`branches`), the rules of autogenerate (`autogenerate`),
`db.init`'s files (`scaffold`, `templates/`) and the child Alembic process for an env.py of its
own, the parent's side (`isolated`) and the child's (`isolated_main`); a release in two phases
(`phases`, `phase_runs`); and the ledger of applied steps: its table (`ledger`), its rows written
in each step's transaction (`ledger_hook`), who and where (`provenance`), its comparison with the
files (`ledger_check`) and its views (`ledger_views`).

Imports: `target` and the layers below.
"""
