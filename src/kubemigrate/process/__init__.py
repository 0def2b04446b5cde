"""Child processes, the lowest layer above `errors` and `settings`: starting and stopping them
(`children`), what they print (`output`), finding a program on disk (`programs`), and Ctrl-C
and SIGTERM (`interrupts`).

Imports: `kubemigrate.errors`, `files`, `settings` and `units` only. A caller names what the
layer must know (which variables are secret, which program and how to install it).
"""
