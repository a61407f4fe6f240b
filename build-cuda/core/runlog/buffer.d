build-cuda/core/runlog/buffer.o: core/runlog/buffer.c \
 core/runlog/internal.h core/runlog.h core/error.h
core/runlog/internal.h:
core/runlog.h:
core/error.h:
