build-cuda/core/runlog/runs.o: core/runlog/runs.c core/runlog/internal.h \
 core/runlog.h core/error.h
core/runlog/internal.h:
core/runlog.h:
core/error.h:
