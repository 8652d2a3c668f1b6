"""Tickhouse: shared code for the producer, the Airflow drain and the alert service."""
