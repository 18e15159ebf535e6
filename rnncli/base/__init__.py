"""The base layer: what every other layer may use. Errors (`RnncliError` and its kinds), where files
live (`paths`), checks on the paths a user names (`pathcheck`), writing a file whole or not at all
(`files`), and what the machine is (`machine`: its CPU, cores and memory).

Imports: the standard library and numpy only; nothing else of rnncli."""
