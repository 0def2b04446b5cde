"""The target: which database the settings name and how it is reached (`database`: local,
embedded, external, or in the cluster through a tunnel), and which credentials win
(`credentials`: the Secret, `DATABASE_URL`, the `KUBEMIGRATE_DB_*` parts).

Imports: `kubernetes`, `postgres` and the layers below.
"""
