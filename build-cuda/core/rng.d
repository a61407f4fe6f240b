build-cuda/core/rng.o: core/rng.c core/rng.h core/philox.h
core/rng.h:
core/philox.h:
