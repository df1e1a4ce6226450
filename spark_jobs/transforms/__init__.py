"""Pure transforms: DataFrame -> DataFrame, no I/O, no session creation."""
