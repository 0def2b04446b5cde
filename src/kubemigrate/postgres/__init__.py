"""PostgreSQL: URLs and what a project's env.py gets (`urls`, `exports`), connecting
(`connections`), the migration lock and the session's timeouts (`locking`), the client
programs pg_dump, pg_restore and psql (`clients`, `binaries`), the embedded server (`embedded`,
`server_user`) and SQL split into statements (`statements`).

Imports: the layers below (`process`, then `errors`, `files`, `settings`, `units`).
"""
