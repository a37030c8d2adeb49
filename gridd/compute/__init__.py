"""Compute mode: workers that train Keras models for clients, and the job protocol."""
