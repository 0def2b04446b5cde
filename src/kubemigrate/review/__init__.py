"""The review of what a release will do to the database: the plan's model (`model`), the
inferred locks (`locks`), squawk's findings (`squawk`, run once per revision), building the plan
(`build`), rehearsing it on a throwaway copy (`rehearsal`) and showing it (`render`).

Imports: `migrations` and the layers below.
"""
