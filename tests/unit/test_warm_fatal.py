"""Which failed runs retire the warm server (spark_jobs.warm_server.jvm_fatal): the lines are
the shapes Py4J gives a job's traceback (the Java stack trace in the Python exception's text)."""

from __future__ import annotations

from spark_jobs.warm_server import jvm_fatal

CODE_CACHE = [  # a medallion run on a warm server whose code cache was full (C1 alone, 48 MiB)
    "py4j.protocol.Py4JJavaError: An error occurred while calling o4521.save.",
    ": java.lang.InternalError: java.lang.NoSuchMethodException: no such method: "
    "java.lang.invoke.MethodHandle.linkToStatic(Object,int,MemberName)Object/invokeStatic",
    "\tat java.base/java.lang.invoke.MethodHandleStatics.newInternalError(MethodHandleStatics.java:155)",
    "Caused by: java.lang.VirtualMachineError: Out of space in CodeCache for method handle intrinsic",
]


def test_errors_after_which_the_jvm_is_not_trusted_retire_it() -> None:
    assert jvm_fatal(CODE_CACHE) == "java.lang.InternalError"
    assert jvm_fatal(CODE_CACHE[3:]) == "java.lang.VirtualMachineError"
    heap = [
        "py4j.protocol.Py4JJavaError: An error occurred while calling z:x.",
        ": java.lang.OutOfMemoryError: Java heap space",
    ]
    assert jvm_fatal(heap) == "java.lang.OutOfMemoryError"
    assert (
        jvm_fatal(["  Caused by: java.lang.OutOfMemoryError: GC overhead limit exceeded"])
        == "java.lang.OutOfMemoryError"
    )


def test_other_failures_keep_it() -> None:
    assert jvm_fatal([": java.lang.StackOverflowError", "Caused by: java.lang.StackOverflowError"]) is None
    assert jvm_fatal(["pyspark.errors.exceptions.captured.AnalysisException: [TABLE_OR_VIEW_NOT_FOUND]"]) is None
    assert jvm_fatal(["ValueError: a column java.lang.OutOfMemoryErrors was not found"]) is None
    assert jvm_fatal(["MemoryError"]) is None  # Python's own: the JVM is fine
    assert jvm_fatal([]) is None
