"""The base every program imports: settings loader and objects, logging, the process kit.

Nothing here imports another package of the project; every other package may import it.
"""
