build-cuda/core/data/recall.o: core/data/recall.c core/data/kinds.h \
 core/data.h core/error.h core/rng.h
core/data/kinds.h:
core/data.h:
core/error.h:
core/rng.h:
