build-cuda/core/runlog/db.o: core/runlog/db.c core/runlog/internal.h \
 core/runlog.h core/error.h core/embedded.h
core/runlog/internal.h:
core/runlog.h:
core/error.h:
core/embedded.h:
