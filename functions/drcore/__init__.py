"""drcore: the disaster-recovery controller's domain, shared by every function.

It receives its AWS clients through constructors and never reads the environment, so tests and the
embedded drill drive exactly the code Lambda runs.
"""
