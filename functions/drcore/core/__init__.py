"""core: the vocabulary every capability shares: models, domain errors, the settings the functions read
(and the names of their environment variables), the clock. Imports nothing else of drcore."""
