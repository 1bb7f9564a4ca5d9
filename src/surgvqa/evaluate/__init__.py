"""Evaluation: matching answers and measuring adapters."""
