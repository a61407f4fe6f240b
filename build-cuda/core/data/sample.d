build-cuda/core/data/sample.o: core/data/sample.c core/data/kinds.h \
 core/data.h core/error.h core/rng.h
core/data/kinds.h:
core/data.h:
core/error.h:
core/rng.h:
