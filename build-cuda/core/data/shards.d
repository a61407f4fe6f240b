build-cuda/core/data/shards.o: core/data/shards.c core/data/kinds.h \
 core/data.h core/error.h
core/data/kinds.h:
core/data.h:
core/error.h:
