build-cuda/core/data/dataset.o: core/data/dataset.c core/data/kinds.h \
 core/data.h core/error.h
core/data/kinds.h:
core/data.h:
core/error.h:
