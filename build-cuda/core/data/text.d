build-cuda/core/data/text.o: core/data/text.c core/data/kinds.h \
 core/data.h core/error.h
core/data/kinds.h:
core/data.h:
core/error.h:
