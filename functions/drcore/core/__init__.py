"""core: the vocabulary every capability shares: models, domain errors, the settings the functions read
(the names of their environment variables and the seed's defaults, which the stack takes too), the names of
the metrics they publish, the clock. Imports nothing else of drcore."""
