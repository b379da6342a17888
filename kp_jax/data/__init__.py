"""Data: sources -> common example -> tf.data pipeline -> NumPy batches."""
