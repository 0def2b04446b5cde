"""The review of what a release will do to the database: the plan's model (`model`), each
statement read on PostgreSQL's parse tree (`rules`, `alter`, knowing the columns' types from
`schema`), the findings of the inferred locks (`locks`), squawk's findings (`squawk`, run once
per revision), the findings as each revision's phase makes them (`phased`), building the plan
(`build`), rehearsing it on a throwaway copy (`rehearsal`) and
taking its measures into the plan (`measures`), and showing it (`render`).

Imports: `migrations` and the layers below.
"""
