"""Snowflake as the warehouse: the WAREHOUSE switch, the connection, the raw DDL.

Imports nothing heavy: the Snowflake connector and the Airflow provider are imported only when a
connection is actually opened.
"""
