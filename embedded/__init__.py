"""The embedded AWS used by `make drill`, `make bench` and the tests: a moto server in this process,
the narrow fills for what moto does not emulate, and the sample protected system."""
