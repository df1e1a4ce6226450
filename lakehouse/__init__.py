"""Lakehouse core: settings, the SparkJob spec, execution backends and shared models.

Plain Python: nothing here imports pyspark, so flows and tasks can use it freely.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
